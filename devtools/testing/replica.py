"""The read replica in tests: the app configured with it, what the standby has replayed, faults it meets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, text

from devtools import stack
from devtools.neon_standin import StandinControl
from devtools.testing.lambda_runtime import configure_serverless, reset_database_state

# The line a read-only unit logs (at WARNING) when it runs on the primary instead.
FALLBACK = "read-only unit runs on the primary: the replica cannot serve it"


def configure_replica(
    monkeypatch: pytest.MonkeyPatch, *, pooled_url: str, read_url: str, pooler_hosts: str, **extra: str
) -> None:
    """The app in serverless mode on `pooled_url` with `read_url` as its read replica, and `extra` variables set,
    in a new execution environment."""
    configure_serverless(monkeypatch, pooled_url=pooled_url, pooler_hosts=pooler_hosts)
    monkeypatch.setenv("DATABASE_READ_URL", read_url)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    reset_database_state()


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


@contextmanager
def replay_paused() -> Iterator[None]:
    """The local stack's standby with its WAL replay paused in the block (resumed after, whatever happened)."""
    stack.set_replay_paused(True)
    try:
        yield
    finally:
        stack.set_replay_paused(False)


REPLAY_PAUSED = "replay paused (lag bound 0.5 s)"


def replica_faults(replica: StandinControl, *, local_stack: bool) -> dict[str, Callable[[], None]]:
    """The ways the replica goes away while the primary stays up, by name (the standby's paused replay on the local
    stack only): each starts its fault, `end_replica_faults` ends them all."""

    def refuse(kind: str) -> Callable[[], None]:
        def inject() -> None:
            # The open session goes too (a refusal only meets new connections): the compute stopped.
            replica.refuse(kind, times=None)
            replica.suspend()

        return inject

    def slow_wake() -> None:
        replica.configure(wake_delay=1.5)
        replica.suspend()

    faults: dict[str, Callable[[], None]] = {
        "endpoint disabled": refuse("endpoint_disabled"),
        "quota exceeded": refuse("quota_exceeded"),
        "compute unreachable": refuse("compute_unreachable"),
        "too many connections": refuse("too_many_connections"),
        "suspended, slow wake": slow_wake,
    }
    if local_stack:

        def lagging() -> None:
            stack.set_replay_paused(True)

        faults[REPLAY_PAUSED] = lagging
    return faults


def end_replica_faults(replica: StandinControl, *, local_stack: bool) -> None:
    """Undo whatever `replica_faults` started: the replica's endpoint reset, the standby replaying."""
    replica.reset()
    if local_stack:
        stack.set_replay_paused(False)
