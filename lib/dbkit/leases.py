"""Job leases: one run of a scheduled job at a time, through a transaction pooler (no session advisory locks).

A `job_leases` row is taken with one atomic upsert that only succeeds when the previous lease has lapsed. Unlike
pg_try_advisory_xact_lock per batch, it keeps a second run out for the whole run instead of letting two runs
interleave batches; a crashed run blocks others only until `locked_until`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from lib.dbkit.engine import run_in_transaction
from lib.dbkit.errors import DatabaseUnavailableError
from lib.dbkit.observability import logger

_TAKE_LEASE = text(
    """
    INSERT INTO job_leases AS lease (name, holder, locked_until)
    VALUES (:name, :holder, now() + make_interval(secs => :seconds))
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, locked_until = excluded.locked_until
    WHERE lease.locked_until <= now()
    RETURNING holder
    """
)
_RELEASE_LEASE = text("UPDATE job_leases SET locked_until = now() WHERE name = :name AND holder = :holder")


def take_lease(connection: Connection, *, name: str, holder: str, seconds: float) -> bool:
    """True when this holder now owns the job's lease; False while another run's lease is still valid."""
    taken = connection.execute(_TAKE_LEASE, {"name": name, "holder": holder, "seconds": seconds}).first()
    return taken is not None


def release_lease(connection: Connection, *, name: str, holder: str) -> None:
    """Give the lease back early (only if this holder still owns it)."""
    connection.execute(_RELEASE_LEASE, {"name": name, "holder": holder})


@contextmanager
def job_lease(name: str, *, seconds: float, holder: str | None = None) -> Iterator[str | None]:
    """Hold `name`'s lease for the block: yields the holder id, or None when another run holds it (skip the work)."""
    holder = holder or str(uuid.uuid4())
    if not run_in_transaction(lambda c: take_lease(c, name=name, holder=holder, seconds=seconds)):
        yield None
        return
    try:
        yield holder
    finally:
        try:
            run_in_transaction(lambda c: release_lease(c, name=name, holder=holder))
        except DatabaseUnavailableError:
            # The lease lapses on its own; the next run just starts a little later.
            logger.warning("job lease not released", extra={"job": name})
