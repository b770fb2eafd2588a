"""Scheduled purge of expired notes and Idempotency-Keys: bounded batches, one short transaction each, under a lease."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from sqlalchemy import Connection, text

from lib.dbkit.engine import run_in_transaction
from lib.dbkit.invocation import remaining_seconds
from lib.dbkit.leases import job_lease
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


# Both tables in one statement, so a run costs no extra round trip for the keys.
_DELETE_EXPIRED = text(
    """
    WITH expired_notes AS (
        DELETE FROM notes WHERE id IN (
            SELECT id FROM notes WHERE expires_at <= now() ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    ),
    expired_keys AS (
        DELETE FROM idempotency_keys WHERE key IN (
            SELECT key FROM idempotency_keys WHERE expires_at <= now() ORDER BY expires_at LIMIT :batch
            FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM expired_notes) AS notes, (SELECT count(*) FROM expired_keys) AS keys
    """
)


@dataclass(frozen=True)
class PurgedBatch:
    """Rows one batch deleted from each table."""

    notes: int
    keys: int


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


def delete_expired(connection: Connection, *, batch_size: int) -> PurgedBatch:
    """Delete up to `batch_size` expired notes and as many expired Idempotency-Keys, skipping locked rows."""
    row = connection.execute(_DELETE_EXPIRED, {"batch": batch_size}).one()
    return PurgedBatch(notes=row.notes, keys=row.keys)


def purge_expired(*, batch_size: int | None = None, holder: str | None = None) -> PurgeSummary:
    """Purge expired notes and keys in batches (BATCH_SIZE each) under the job lease; skips while another run has it."""
    started = time.perf_counter()
    batch_size = batch_size or BATCH_SIZE
    lease_seconds = max(remaining_seconds(), 0) + LEASE_MARGIN_SECONDS
    purged = keys_purged = batches = 0
    stopped_early = False
    with job_lease(JOB_NAME, seconds=lease_seconds, holder=holder) as held:
        if held is None:
            return PurgeSummary(0, 0, 0, skipped=True, stopped_early=False, duration_ms=_since(started))
        while True:
            if remaining_seconds() < STOP_MARGIN_SECONDS:
                stopped_early = True
                break
            deleted = run_in_transaction(lambda c: delete_expired(c, batch_size=batch_size))
            batches += 1
            purged += deleted.notes
            keys_purged += deleted.keys
            if deleted.notes < batch_size and deleted.keys < batch_size:
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
