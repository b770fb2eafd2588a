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


# The fields of a payload 2.0 event that Mangum or the app reads, with the type each must have. Required fields must
# be present and not null; an optional field that is null means absent (some emulators send every key), and is
# dropped from the event passed on, because Mangum reads optional fields with .get(name, default).
_REQUIRED = "required"
_OPTIONAL = "optional"
_HTTP_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("rawPath", "a string", _REQUIRED),
    ("headers", "an object of strings", _REQUIRED),
    ("routeKey", "a string", _OPTIONAL),
    ("rawQueryString", "a string", _OPTIONAL),
    ("cookies", "a list of strings", _OPTIONAL),
    ("queryStringParameters", "an object of strings", _OPTIONAL),
    ("pathParameters", "an object of strings", _OPTIONAL),
    ("stageVariables", "an object of strings", _OPTIONAL),
    ("body", "a string", _OPTIONAL),
    ("isBase64Encoded", "a boolean", _OPTIONAL),
)
_REQUEST_CONTEXT_HTTP_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("method", "a string", _REQUIRED),
    ("path", "a string", _REQUIRED),
    ("sourceIp", "a string", _REQUIRED),
    ("protocol", "a string", _OPTIONAL),
    ("userAgent", "a string", _OPTIONAL),
)


def _has_type(value: Any, kind: str) -> bool:
    if kind == "a string":
        return isinstance(value, str)
    if kind == "a boolean":
        return isinstance(value, bool)
    if kind == "a list of strings":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if kind == "an object of strings":
        return isinstance(value, Mapping) and all(isinstance(item, str) for item in value.values())
    raise AssertionError(f"unknown field type {kind}")


def _checked(where: str, fields: Mapping[str, Any], table: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    """`fields` without its null optional members; InvalidEventError naming the first field of the wrong type."""
    present = dict(fields)
    for name, kind, need in table:
        value = present.get(name)
        if value is None:
            if need == _REQUIRED:
                problem = "missing" if name not in present else "null"
                raise InvalidEventError(f"expected {EXPECTED} with {where}{name} {kind}; it is {problem}")
            present.pop(name, None)
        elif not _has_type(value, kind):
            raise InvalidEventError(f"expected {EXPECTED} with {where}{name} {kind}, got {_describe(value)}")
    return present


def _describe(value: Any) -> str:
    if isinstance(value, list):
        wrong = next((item for item in value if not isinstance(item, str)), None)
        return f"a list holding {type(wrong).__name__}" if wrong is not None else "a list"
    if isinstance(value, Mapping):
        wrong = next((key for key, item in value.items() if not isinstance(item, str)), None)
        return f"{type(value[wrong]).__name__} at key {str(wrong)[:50]!r}" if wrong is not None else "an object"
    return type(value).__name__


def check_http_api_event(event: Any) -> dict[str, Any]:
    """The event, null optional fields removed, when it is an HTTP API 2.0 event; InvalidEventError naming the field."""
    # Mangum fails on these with RuntimeError/KeyError/TypeError/AttributeError deep inside; a wrong trigger or a
    # hand-made test event deserves a message that names the field and says what was expected.
    if not isinstance(event, dict):
        raise InvalidEventError(f"expected {EXPECTED}, got a {type(event).__name__}")
    if event.get("version") != "2.0":
        raise InvalidEventError(f"expected {EXPECTED}, got version {event.get('version')!r}")
    context = event.get("requestContext")
    if not isinstance(context, Mapping):
        raise InvalidEventError(f"expected {EXPECTED} with requestContext an object, got {_describe(context)}")
    http = context.get("http")
    if not isinstance(http, Mapping):
        raise InvalidEventError(f"expected {EXPECTED} with requestContext.http an object, got {_describe(http)}")
    checked = _checked("", event, _HTTP_FIELDS)
    checked["requestContext"] = {
        **context,
        "http": _checked("requestContext.http.", http, _REQUEST_CONTEXT_HTTP_FIELDS),
    }
    _check_server_headers(checked["headers"])
    body = checked.get("body")
    if checked.get("isBase64Encoded") and body is not None:
        try:
            base64.b64decode(body, validate=True)
        except binascii.Error:
            raise InvalidEventError(f"expected {EXPECTED}: isBase64Encoded is true but body is not base64") from None
    return checked


def _check_server_headers(headers: Mapping[str, str]) -> None:
    # Mangum turns Host ("name" or "name:port") and X-Forwarded-Port into the ASGI server tuple with int().
    lowered = {name.lower(): value for name, value in headers.items() if name.lower() in ("host", "x-forwarded-port")}
    host = lowered.get("host", "")
    port_in_host = host.rpartition(":")[2]
    if host.count(":") > 1 or (":" in host and not (port_in_host.isascii() and port_in_host.isdigit())):
        raise InvalidEventError(f"expected {EXPECTED} with headers.host a host name with an optional numeric port")
    port = lowered.get("x-forwarded-port")
    if port is not None and ":" not in host and not (port.isascii() and port.isdigit()):
        raise InvalidEventError(f"expected {EXPECTED} with headers.x-forwarded-port a number, got {port[:20]!r}")


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
