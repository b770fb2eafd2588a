"""The HTTP API 2.0 shape check, field by field: a wrong type is InvalidEventError naming the field; null is absent."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from devtools.testing.lambda_runtime import FakeLambdaContext
from lib.dbkit.errors import InvalidEventError
from lib.dbkit.lambda_events import check_http_api_event
from tests.kit.tiny_api import event, handler, json_event, tiny_api

# (path to the field, required?, the type the field must have)
FIELDS: list[tuple[tuple[str, ...], bool, str]] = [
    (("rawPath",), True, "string"),
    (("headers",), True, "string map"),
    (("requestContext",), True, "object"),
    (("requestContext", "http"), True, "object"),
    (("requestContext", "http", "method"), True, "string"),
    (("requestContext", "http", "path"), True, "string"),
    (("requestContext", "http", "sourceIp"), True, "string"),
    (("requestContext", "http", "protocol"), False, "string"),
    (("requestContext", "http", "userAgent"), False, "string"),
    (("routeKey",), False, "string"),
    (("rawQueryString",), False, "string"),
    (("cookies",), False, "string list"),
    (("queryStringParameters",), False, "string map"),
    (("pathParameters",), False, "string map"),
    (("stageVariables",), False, "string map"),
    (("body",), False, "string"),
    (("isBase64Encoded",), False, "boolean"),
]
WRONG_VALUES: dict[str, list[Any]] = {
    "string": [7, 1.5, True, ["a"], {"a": "b"}],
    "boolean": [1, "true", [], {}],
    "object": [7, "text", ["a"], True],
    "string list": [7, "a=b", {"a": "b"}, [1], ["ok", None], [["a"]]],
    "string map": [7, "a=b", ["a"], {"k": 1}, {"k": None}, {"k": ["v1", "v2"]}, {"k": {"v": "w"}}],
}
CASES = [
    pytest.param(path, value, id=f"{'.'.join(path)}={json.dumps(value)}")
    for path, _, kind in FIELDS
    for value in WRONG_VALUES[kind]
]


def _set(event: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


def _drop(event: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    target = event
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return event


def _lookup(event: dict[str, Any], path: tuple[str, ...]) -> Any:
    target: Any = event
    for key in path:
        target = target[key]
    return target


def _post() -> dict[str, Any]:
    return json_event("POST", "/items?limit=1", {"name": "x"}, headers=[("cookie", "a=b")])


def _get(path: str = "/health") -> dict[str, Any]:
    return event("GET", path)


API = handler(tiny_api().app)
# EventBridge's, as `sam local generate-event cloudwatch scheduled-event` writes it.
SCHEDULED_EVENT = {
    "id": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "1970-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/ExampleRule"],
    "detail": {},
}


@pytest.mark.parametrize("request_event", [_post(), _get(), event("DELETE", "/items/1")], ids=["post", "get", "delete"])
def test_an_event_as_api_gateway_sends_it_passes_unchanged(request_event: dict[str, Any]) -> None:
    assert check_http_api_event(copy.deepcopy(request_event)) == request_event


@pytest.mark.parametrize(("path", "value"), CASES)
def test_a_field_of_the_wrong_type_is_refused_naming_the_field(path: tuple[str, ...], value: Any) -> None:
    event = _set(_post(), path, value)
    with pytest.raises(InvalidEventError, match="API Gateway HTTP API event") as raised:
        check_http_api_event(event)
    assert ".".join(path) in str(raised.value)


@pytest.mark.parametrize("path", [path for path, required, _ in FIELDS if required], ids=".".join)
@pytest.mark.parametrize("how", ["missing", "null"])
def test_a_required_field_missing_or_null_is_refused_naming_it(path: tuple[str, ...], how: str) -> None:
    event = _drop(_get(), path) if how == "missing" else _set(_get(), path, None)
    with pytest.raises(InvalidEventError) as raised:
        check_http_api_event(event)
    assert ".".join(path) in str(raised.value)


@pytest.mark.parametrize("path", [path for path, required, _ in FIELDS if not required], ids=".".join)
def test_null_in_an_optional_field_means_absent(path: tuple[str, ...]) -> None:
    event = _set(_get(), path, None)
    checked = check_http_api_event(event)
    with pytest.raises(KeyError):
        _lookup(checked, path)
    assert _lookup(event, path) is None  # the caller's event is not modified


@pytest.mark.parametrize(("path", "value"), CASES)
def test_through_the_handler_a_wrong_type_is_invalid_event_error_not_a_crash(path: tuple[str, ...], value: Any) -> None:
    with pytest.raises(InvalidEventError):
        API(_set(_get("/nothing"), path, value), FakeLambdaContext())


def test_through_the_handler_every_optional_field_null_at_once_is_served() -> None:
    event = _get("/items/not-a-number")
    for path, required, _ in FIELDS:
        if not required:
            _set(event, path, None)
    response = API(event, FakeLambdaContext())
    assert response["statusCode"] == 422  # routed and validated


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"host": "a:b:c"}, "headers.host"),
        ({"host": "example.com:https"}, "headers.host"),
        ({"host": "example.com:"}, "headers.host"),
        ({"x-forwarded-port": "eighty"}, "headers.x-forwarded-port"),
    ],
)
def test_host_and_forwarded_port_headers_that_mangum_cannot_parse_are_named(
    headers: dict[str, str], field: str
) -> None:
    event = _get()
    event["headers"].update(headers)
    with pytest.raises(InvalidEventError, match=field):
        API(event, FakeLambdaContext())


@pytest.mark.parametrize(
    ("event", "complaint"),
    [
        ([], "got a list"),
        ({**_get(), "version": "1.0"}, "got version '1.0'"),
        ({**_post(), "isBase64Encoded": True, "body": "!!"}, "not base64"),
        (SCHEDULED_EVENT, "got version None"),
    ],
)
def test_other_shapes_are_refused_with_what_was_expected(event: Any, complaint: str) -> None:
    with pytest.raises(InvalidEventError, match="API Gateway HTTP API event") as raised:
        check_http_api_event(event)
    assert complaint in str(raised.value)
