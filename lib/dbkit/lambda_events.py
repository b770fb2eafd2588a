"""Shape checks for the Lambda events the handlers accept, run before any adapter or SQL sees them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from lib.dbkit.errors import InvalidEventError

EXPECTED = "an API Gateway HTTP API event (payload format 2.0)"
SCHEDULED_EVENT_SOURCE = "aws.events"
SCHEDULED_EVENT_DETAIL_TYPE = "Scheduled Event"


def check_http_api_event(event: Any) -> dict[str, Any]:
    """The event itself when it is an HTTP API 2.0 event; InvalidEventError naming what is wrong otherwise."""
    # Mangum fails on these with RuntimeError/KeyError/TypeError deep inside; a wrong trigger or a hand-made test
    # event deserves a message that says what was expected.
    if not isinstance(event, dict):
        raise InvalidEventError(f"expected {EXPECTED}, got a {type(event).__name__}")
    if event.get("version") != "2.0":
        raise InvalidEventError(f"expected {EXPECTED}, got version {event.get('version')!r}")
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    if not (isinstance(http, Mapping) and isinstance(http.get("method"), str) and isinstance(http.get("path"), str)):
        raise InvalidEventError(f"expected {EXPECTED} with requestContext.http.method and .path strings")
    if not isinstance(event.get("rawPath"), str):
        raise InvalidEventError(f"expected {EXPECTED} with a rawPath string")
    for name in ("headers", "queryStringParameters", "pathParameters"):
        if name in event and not isinstance(event[name], Mapping):
            raise InvalidEventError(f"expected {EXPECTED} with {name} an object, got {type(event[name]).__name__}")
    body = event.get("body")
    if body is not None and not isinstance(body, str):
        raise InvalidEventError(f"expected {EXPECTED} with body a string, got {type(body).__name__}")
    if event.get("isBase64Encoded") and body is not None:
        try:
            base64.b64decode(body, validate=True)
        except binascii.Error:
            raise InvalidEventError(f"expected {EXPECTED}: isBase64Encoded is true but body is not base64") from None
    return event


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
