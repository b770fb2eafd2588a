"""Job leases: one run of a scheduled job at a time, through a transaction pooler (no session advisory locks).

A `job_leases` row is taken with one atomic upsert that only succeeds when the previous lease has lapsed (or is
already this holder's). Unlike pg_try_advisory_xact_lock per batch, it keeps a second run out for the whole run
instead of letting two runs interleave batches; a crashed run blocks others only until `locked_until`.

Two ways to use it: `job_lease` around any work (one round trip to take, one to give back), or `leased_statement`,
which folds take-or-extend, the work and the release into one statement (one round trip per batch).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, TextClause, text

from lib.dbkit.engine import run_in_transaction
from lib.dbkit.errors import DatabaseUnavailableError
from lib.dbkit.observability import logger

_TAKE_LEASE = text(
    """
    INSERT INTO job_leases AS lease (name, holder, locked_until)
    VALUES (:name, :holder, now() + make_interval(secs => :seconds))
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, locked_until = excluded.locked_until
    WHERE lease.locked_until <= now() OR lease.holder = excluded.holder
    RETURNING holder
    """
)
_RELEASE_LEASE = text("UPDATE job_leases SET locked_until = now() WHERE name = :name AND holder = :holder")

# The lease CTEs of leased_statement. FOR UPDATE makes a concurrent run wait for this statement and then re-check
# the row as committed (READ COMMITTED re-evaluation), so two runs never both see a lapsed lease. A missing row is
# inserted; a row inserted by this statement is invisible to its own UPDATE, so that first run releases separately.
_LEASE_CTES = """
    lease_row AS (
        SELECT name, holder, locked_until FROM job_leases WHERE name = :lease_name FOR UPDATE
    ),
    lease_taken AS (
        SELECT name FROM lease_row WHERE locked_until <= now() OR holder = :lease_holder
    ),
    lease_created AS (
        INSERT INTO job_leases (name, holder, locked_until)
        SELECT :lease_name, :lease_holder, now() + make_interval(secs => :lease_seconds)
        WHERE NOT EXISTS (SELECT FROM lease_row)
        ON CONFLICT (name) DO NOTHING
        RETURNING name
    ),
    lease_held AS (
        SELECT name FROM lease_taken UNION ALL SELECT name FROM lease_created
    )"""


def leased_statement(work: str, *, done: str, result: str) -> TextClause:
    """One statement: take or extend the lease, run `work` only while it is held, give it back when `done`.

    `work` is one or more CTEs (``name AS (...)``) that must do nothing unless ``EXISTS (SELECT FROM lease_held)``;
    `done` is an SQL condition over them (e.g. a short batch); `result` the extra output columns. Parameters:
    ``:lease_name``, ``:lease_holder``, ``:lease_seconds`` and the work's own. Output columns: ``leased`` (this
    holder held the lease for the work) and ``release_pending`` (call `release_lease`: the lease row was
    created by this statement, which cannot also update it), then `result`.
    """
    return text(
        f"""
        WITH {_LEASE_CTES},
        {work},
        lease_kept AS (
            UPDATE job_leases
            SET holder = :lease_holder,
                locked_until = CASE WHEN {done} THEN now() ELSE now() + make_interval(secs => :lease_seconds) END
            WHERE name IN (SELECT name FROM lease_taken)
            RETURNING name
        )
        SELECT EXISTS (SELECT FROM lease_held) AS leased,
               EXISTS (SELECT FROM lease_created) AND {done} AS release_pending,
               {result}
        """
    )


def take_lease(connection: Connection, *, name: str, holder: str, seconds: float) -> bool:
    """True when this holder now owns the job's lease; False while another run's lease is still valid."""
    taken = connection.execute(_TAKE_LEASE, {"name": name, "holder": holder, "seconds": seconds}).first()
    return taken is not None


def release_lease(connection: Connection, *, name: str, holder: str) -> None:
    """Give the lease back early (only if this holder still owns it)."""
    connection.execute(_RELEASE_LEASE, {"name": name, "holder": holder})


def release_lease_now(name: str, *, holder: str) -> None:
    """Give the lease back in its own unit of work; a failure only logs (the lease lapses on its own)."""
    try:
        # Idempotent: releasing twice is releasing once.
        run_in_transaction(lambda c: release_lease(c, name=name, holder=holder), single_statement=True, idempotent=True)
    except DatabaseUnavailableError:
        logger.warning("job lease not released", extra={"job": name})


@contextmanager
def job_lease(name: str, *, seconds: float, holder: str | None = None) -> Iterator[str | None]:
    """Hold `name`'s lease for the block: yields the holder id, or None when another run holds it (skip the work)."""
    holder = holder or str(uuid.uuid4())
    # Idempotent: the upsert also succeeds when this holder already has the lease.
    taken = run_in_transaction(
        lambda c: take_lease(c, name=name, holder=holder, seconds=seconds), single_statement=True, idempotent=True
    )
    if not taken:
        yield None
        return
    try:
        yield holder
    finally:
        release_lease_now(name, holder=holder)
