"""The shape check for API Gateway HTTP API (payload 2.0) events, before Mangum sees them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from lib.errors import InvalidEventError

EXPECTED = "an API Gateway HTTP API event (payload format 2.0)"


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
