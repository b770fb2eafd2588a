"""PurgeFunction entry point: an EventBridge Scheduled Event → purge expired notes (lib.purge)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from lib.invocation import lambda_entry
from lib.observability import logger, metrics
from lib.purge import run_scheduled


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
@lambda_entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_scheduled(event)
