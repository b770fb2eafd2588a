"""Scheduled purge of expired notes and Idempotency-Keys: bounded batches, one statement each, under a job lease."""

# On Core (run_in_transaction, a Connection), not a Session: each batch is one hand-written statement (the lease and
# both deletes, one round trip), so the ORM would add only its import: ~65 ms (a quarter) more INIT, measured, for a
# function that is cold at nearly every scheduled run (devtools/tests/integration/test_bench_smoke.py keeps it out).

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from sqlalchemy import Connection, text

from lib.dbkit.engine import run_in_transaction
from lib.dbkit.invocation import remaining_seconds
from lib.dbkit.leases import leased_statement, release_lease_now
from lib.dbkit.observability import logger, metrics

JOB_NAME = "purge-expired-notes"
BATCH_SIZE = 500
# Stop starting batches when less than this is left: one batch plus the lease release must still fit.
STOP_MARGIN_SECONDS = 5.0
# The lease outlives the run by this much, so a run never loses it while still deleting.
LEASE_MARGIN_SECONDS = 60

_DELETE_BATCH = text(
    """
    DELETE FROM notes WHERE id IN (
        SELECT id FROM notes WHERE expires_at <= now() ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    """
)


# One round trip per batch: take or extend the lease, delete a batch of each table under it, and give the lease
# back when both came up short (the last batch). Rows locked by a concurrent delete are skipped, not waited for.
_LEASED_BATCH = leased_statement(
    """
    purge_notes AS (
        DELETE FROM notes WHERE id IN (
            SELECT id FROM notes WHERE expires_at <= now() AND EXISTS (SELECT FROM lease_held)
            ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    ),
    purge_keys AS (
        DELETE FROM idempotency_keys WHERE key IN (
            SELECT key FROM idempotency_keys WHERE expires_at <= now() AND EXISTS (SELECT FROM lease_held)
            ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )""",
    done="((SELECT count(*) FROM purge_notes) < :batch AND (SELECT count(*) FROM purge_keys) < :batch)",
    result="(SELECT count(*) FROM purge_notes) AS notes, (SELECT count(*) FROM purge_keys) AS keys",
)


@dataclass(frozen=True)
class LeasedBatch:
    """One batch under the lease: whether this run held it, what went, whether the lease still needs releasing."""

    leased: bool
    notes: int
    keys: int
    release_pending: bool


@dataclass(frozen=True)
class PurgeSummary:
    """What one scheduled run did; logged as one line and returned to the caller."""

    purged: int
    keys_purged: int
    batches: int
    skipped: bool
    stopped_early: bool
    duration_ms: float


def delete_expired_batch(connection: Connection, *, batch_size: int) -> int:
    """Delete up to `batch_size` expired notes only (no keys), skipping locked rows; returns the count."""
    return connection.execute(_DELETE_BATCH, {"batch": batch_size}).rowcount


def purge_batch(connection: Connection, *, holder: str, batch_size: int, lease_seconds: float) -> LeasedBatch:
    """Under `holder`'s lease (taken or extended here), delete up to `batch_size` expired notes and keys at once."""
    params = {"lease_name": JOB_NAME, "lease_holder": holder, "lease_seconds": lease_seconds, "batch": batch_size}
    row = connection.execute(_LEASED_BATCH, params).one()
    return LeasedBatch(leased=row.leased, notes=row.notes, keys=row.keys, release_pending=row.release_pending)


def purge_expired(*, batch_size: int | None = None, holder: str | None = None) -> PurgeSummary:
    """Purge expired notes and keys in batches (BATCH_SIZE each) under the job lease; skips while another run has it."""
    started = time.perf_counter()
    batch_size = batch_size or BATCH_SIZE
    holder = holder or str(uuid.uuid4())
    purged = keys_purged = batches = 0
    stopped_early = False
    while True:
        if remaining_seconds() < STOP_MARGIN_SECONDS:
            stopped_early = True
            if batches:
                release_lease_now(JOB_NAME, holder=holder)
            break
        # Idempotent: a re-run under the same holder deletes whatever is still expired, and keeps the lease.
        batch = run_in_transaction(
            functools.partial(
                purge_batch,
                holder=holder,
                batch_size=batch_size,
                lease_seconds=max(remaining_seconds(), 0) + LEASE_MARGIN_SECONDS,
            ),
            single_statement=True,
            idempotent=True,
        )
        if not batch.leased:
            if batches == 0:
                return PurgeSummary(0, 0, 0, skipped=True, stopped_early=False, duration_ms=_since(started))
            # Only after our lease lapsed (a batch slower than LEASE_MARGIN_SECONDS): the other run carries on.
            logger.warning("purge lease lost to another run; stopping", extra={"batches": batches})
            break
        batches += 1
        purged += batch.notes
        keys_purged += batch.keys
        if batch.release_pending:
            release_lease_now(JOB_NAME, holder=holder)
        if batch.notes < batch_size and batch.keys < batch_size:
            break
    return PurgeSummary(
        purged, keys_purged, batches, skipped=False, stopped_early=stopped_early, duration_ms=_since(started)
    )


def run_scheduled(event_id: str) -> dict[str, Any]:
    """Handle one checked scheduled event: purge, log one summary line, add metrics."""
    summary = purge_expired()
    logger.info("purge finished", extra={"purge": asdict(summary), "event_id": event_id})
    metrics.add_metric(name="NotesPurged", unit=MetricUnit.Count, value=summary.purged)
    metrics.add_metric(name="IdempotencyKeysPurged", unit=MetricUnit.Count, value=summary.keys_purged)
    metrics.add_metric(name="PurgeBatches", unit=MetricUnit.Count, value=summary.batches)
    metrics.add_metric(name="PurgeSkipped", unit=MetricUnit.Count, value=int(summary.skipped))
    metrics.add_metric(name="PurgeDuration", unit=MetricUnit.Milliseconds, value=summary.duration_ms)
    return asdict(summary)


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
