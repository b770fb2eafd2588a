"""The read replica in tests: what the standby has replayed, seen on a plain engine of its own."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text


def wait_replayed(standby: Engine, lsn: str, timeout: float = 10.0) -> None:
    """Return once the standby has replayed WAL up to `lsn` (fail after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        with standby.connect() as connection:
            if connection.execute(
                text("select pg_last_wal_replay_lsn() >= cast(:lsn as pg_lsn)"), {"lsn": lsn}
            ).scalar():
                return
        assert time.monotonic() < deadline, f"the standby did not replay {lsn} within {timeout} s"
        time.sleep(0.05)
