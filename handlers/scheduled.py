"""PurgeFunction entry point: an EventBridge Scheduled Event → purge expired notes (lib.sample_app.purge)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from handlers import init_done
from lib.dbkit.invocation import lambda_entry
from lib.dbkit.lambda_events import check_scheduled_event
from lib.dbkit.observability import logger, metrics

from lib.sample_app.purge import run_scheduled


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics(capture_cold_start_metric=True)
@lambda_entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_scheduled(check_scheduled_event(event))


init_done()
