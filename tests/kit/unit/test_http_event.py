"""The HTTP API 2.0 shape check, field by field: a wrong type is InvalidEventError naming the field; null is absent."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from devtools.events import event_names, load_event
from devtools.testing.lambda_runtime import FakeLambdaContext
from handlers.api import handler as api_handler
from lib.dbkit.errors import InvalidEventError
from lib.dbkit.lambda_events import check_http_api_event

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


@pytest.mark.parametrize("name", event_names("api-"))
def test_every_sample_http_event_passes_unchanged(name: str) -> None:
    event = load_event(name)
    assert check_http_api_event(copy.deepcopy(event)) == event


@pytest.mark.parametrize(("path", "value"), CASES)
def test_a_field_of_the_wrong_type_is_refused_naming_the_field(path: tuple[str, ...], value: Any) -> None:
    event = _set(load_event("api-02-create-note"), path, value)
    with pytest.raises(InvalidEventError, match="API Gateway HTTP API event") as raised:
        check_http_api_event(event)
    assert ".".join(path) in str(raised.value)


@pytest.mark.parametrize("path", [path for path, required, _ in FIELDS if required], ids=".".join)
@pytest.mark.parametrize("how", ["missing", "null"])
def test_a_required_field_missing_or_null_is_refused_naming_it(path: tuple[str, ...], how: str) -> None:
    event = load_event("api-01-health")
    event = _drop(event, path) if how == "missing" else _set(event, path, None)
    with pytest.raises(InvalidEventError) as raised:
        check_http_api_event(event)
    assert ".".join(path) in str(raised.value)


@pytest.mark.parametrize("path", [path for path, required, _ in FIELDS if not required], ids=".".join)
def test_null_in_an_optional_field_means_absent(path: tuple[str, ...]) -> None:
    event = _set(load_event("api-01-health"), path, None)
    checked = check_http_api_event(event)
    with pytest.raises(KeyError):
        _lookup(checked, path)
    assert _lookup(event, path) is None  # the caller's event is not modified


@pytest.mark.parametrize(("path", "value"), CASES)
def test_through_the_handler_a_wrong_type_is_invalid_event_error_not_a_crash(path: tuple[str, ...], value: Any) -> None:
    with pytest.raises(InvalidEventError):
        api_handler(_set(load_event("api-17-unknown-route"), path, value), FakeLambdaContext())


def test_through_the_handler_every_optional_field_null_at_once_is_served() -> None:
    event = load_event("api-11-get-note-malformed-id")
    for path, required, _ in FIELDS:
        if not required:
            _set(event, path, None)
    response = api_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 422  # routed and validated, without a database


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
    event = load_event("api-01-health")
    event["headers"].update(headers)
    with pytest.raises(InvalidEventError, match=field):
        api_handler(event, FakeLambdaContext())


@pytest.mark.parametrize(
    ("event", "complaint"),
    [
        ([], "got a list"),
        ({**load_event("api-01-health"), "version": "1.0"}, "got version '1.0'"),
        ({**load_event("api-02-create-note"), "isBase64Encoded": True, "body": "!!"}, "not base64"),
        (load_event("scheduled-01-purge"), "got version None"),
    ],
)
def test_other_shapes_are_refused_with_what_was_expected(event: Any, complaint: str) -> None:
    with pytest.raises(InvalidEventError, match="API Gateway HTTP API event") as raised:
        check_http_api_event(event)
    assert complaint in str(raised.value)
