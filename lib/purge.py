"""Scheduled purge of expired notes: bounded batches, one short transaction each, one run at a time.

Overlap guard: a `job_leases` row taken with one atomic upsert that only succeeds when the previous lease has
lapsed. It works through a transaction pooler (no session state) and, unlike pg_try_advisory_xact_lock per batch,
keeps a second run out for the whole run instead of letting two runs interleave batches.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.engine import run_in_transaction
from lib.errors import DatabaseUnavailableError, InvalidEventError
from lib.invocation import remaining_seconds
from lib.observability import logger, metrics

JOB_NAME = "purge-expired-notes"
BATCH_SIZE = 500
# Stop starting batches when less than this is left: one batch plus the lease release must still fit.
STOP_MARGIN_SECONDS = 5.0
# The lease outlives the run by this much, so a run never loses it while still deleting.
LEASE_MARGIN_SECONDS = 60

SCHEDULED_EVENT_SOURCE = "aws.events"
SCHEDULED_EVENT_DETAIL_TYPE = "Scheduled Event"

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
_DELETE_BATCH = text(
    """
    DELETE FROM notes WHERE id IN (
        SELECT id FROM notes WHERE expires_at <= now() ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    """
)


@dataclass(frozen=True)
class PurgeSummary:
    """What one scheduled run did; logged as one line and returned to the caller."""

    purged: int
    batches: int
    skipped: bool
    stopped_early: bool
    duration_ms: float


def check_scheduled_event(event: Any) -> str:
    """The event id of an EventBridge Scheduled Event; InvalidEventError for anything else."""
    expected = f'an EventBridge Scheduled Event (source "{SCHEDULED_EVENT_SOURCE}", detail-type "Scheduled Event")'
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"expected {expected}, got a {type(event).__name__}")
    source, detail_type, event_id = event.get("source"), event.get("detail-type"), event.get("id")
    if source != SCHEDULED_EVENT_SOURCE or detail_type != SCHEDULED_EVENT_DETAIL_TYPE:
        raise InvalidEventError(f"expected {expected}, got source {source!r}, detail-type {detail_type!r}")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEventError(f"expected {expected} with a non-empty string id, got id {event_id!r}")
    return event_id


def take_lease(session: Session, *, name: str, holder: str, seconds: float) -> bool:
    """True when this holder now owns the job's lease; False while another run's lease is still valid."""
    return session.execute(_TAKE_LEASE, {"name": name, "holder": holder, "seconds": seconds}).first() is not None


def release_lease(session: Session, *, name: str, holder: str) -> None:
    """Give the lease back early (only if this holder still owns it)."""
    session.execute(_RELEASE_LEASE, {"name": name, "holder": holder})


def delete_expired_batch(session: Session, *, batch_size: int) -> int:
    """Delete up to `batch_size` expired notes, skipping rows another transaction has locked; returns the count."""
    return session.execute(_DELETE_BATCH, {"batch": batch_size}).rowcount  # type: ignore[attr-defined, no-any-return]


def purge_expired(*, batch_size: int | None = None, holder: str | None = None) -> PurgeSummary:
    """Purge expired notes in batches (BATCH_SIZE by default) under the job lease; skips while another run holds it."""
    started = time.perf_counter()
    batch_size = batch_size or BATCH_SIZE
    holder = holder or str(uuid.uuid4())
    lease_seconds = max(remaining_seconds(), 0) + LEASE_MARGIN_SECONDS
    if not run_in_transaction(lambda s: take_lease(s, name=JOB_NAME, holder=holder, seconds=lease_seconds)):
        return PurgeSummary(0, 0, skipped=True, stopped_early=False, duration_ms=_since(started))
    purged = batches = 0
    stopped_early = False
    try:
        while True:
            if remaining_seconds() < STOP_MARGIN_SECONDS:
                stopped_early = True
                break
            deleted = run_in_transaction(lambda s: delete_expired_batch(s, batch_size=batch_size))
            batches += 1
            purged += deleted
            if deleted < batch_size:
                break
    finally:
        try:
            run_in_transaction(lambda s: release_lease(s, name=JOB_NAME, holder=holder))
        except DatabaseUnavailableError:
            # The lease lapses on its own; the next run just starts a little later.
            logger.warning("purge lease not released", extra={"job": JOB_NAME})
    return PurgeSummary(purged, batches, skipped=False, stopped_early=stopped_early, duration_ms=_since(started))


def run_scheduled(event: Any) -> dict[str, Any]:
    """Handle one scheduled event: check its shape (before any SQL), purge, log one summary line, add metrics."""
    check_scheduled_event(event)
    summary = purge_expired()
    logger.info("purge finished", extra={"purge": asdict(summary)})
    metrics.add_metric(name="NotesPurged", unit=MetricUnit.Count, value=summary.purged)
    metrics.add_metric(name="PurgeBatches", unit=MetricUnit.Count, value=summary.batches)
    metrics.add_metric(name="PurgeSkipped", unit=MetricUnit.Count, value=int(summary.skipped))
    metrics.add_metric(name="PurgeDuration", unit=MetricUnit.Milliseconds, value=summary.duration_ms)
    return asdict(summary)


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
