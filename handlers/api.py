"""ApiFunction entry point: API Gateway HTTP API (payload 2.0) → Mangum → the FastAPI app in lib.sample_app.api."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from handlers import init_done
from lib.dbkit.invocation import lambda_entry
from lib.dbkit.lambda_events import check_http_api_event
from lib.dbkit.observability import logger, metrics

from lib.sample_app.api import create_app

app = create_app()
# lifespan="off": Mangum would run the ASGI lifespan on every invocation; the engine lives in lib.dbkit.engine instead.
adapter = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@lambda_entry
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return adapter(check_http_api_event(event), context)


init_done()
