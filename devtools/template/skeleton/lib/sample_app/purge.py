"""The scheduled job (PurgeFunction in template.yaml): one run per EventBridge schedule, under the kit's job lease.

It does no work yet: give it yours (e.g. deleting expired rows in batches, as the sample's purge does).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lib.dbkit.invocation import remaining_seconds
from lib.dbkit.leases import job_lease
from lib.dbkit.observability import logger, metrics

JOB_NAME = "scheduled-job"
# The lease outlives the run by this much, so a run never loses it while still working.
LEASE_MARGIN_SECONDS = 60


def run_scheduled(event_id: str) -> dict[str, Any]:
    """Handle one checked scheduled event: take the lease, do the work, log one summary line, add metrics."""
    started = time.perf_counter()
    with job_lease(JOB_NAME, seconds=max(remaining_seconds(), 0) + LEASE_MARGIN_SECONDS) as holder:
        leased = holder is not None
        # Your job's work goes here, run only while this run holds the lease.
    summary = {"purged": 0, "skipped": not leased, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
    logger.info("scheduled job finished", extra={"job": summary, "event_id": event_id})
    # The scheduled job's widget and the missed-run alarm in template.yaml read these (NotesPurged's sample count is
    # the heartbeat): rename them with the job's work, there and here together (tests/kit/unit/test_alarms.py).
    metrics.add_metric(name="NotesPurged", unit=MetricUnit.Count, value=0)
    metrics.add_metric(name="IdempotencyKeysPurged", unit=MetricUnit.Count, value=0)
    metrics.add_metric(name="PurgeBatches", unit=MetricUnit.Count, value=0)
    metrics.add_metric(name="PurgeSkipped", unit=MetricUnit.Count, value=int(not leased))
    metrics.add_metric(name="PurgeDuration", unit=MetricUnit.Milliseconds, value=summary["duration_ms"])
    return summary
