"""devtools.http_api_events: routes, the payload 2.0 event API Gateway sends, and its response rules, as data."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devtools.events import load_event
from devtools.http_api_events import (
    HttpRequest,
    MalformedResponseError,
    RouteMatch,
    gateway_error,
    gateway_response,
    http_api_event,
    match_route,
)
from devtools.http_routes import HttpRoute, template_routes
from lib.dbkit.lambda_events import check_http_api_event

API_ROUTES = template_routes()
DEFAULT = RouteMatch("ApiFunction", HttpRoute(None, None), {})


def _event(
    method: str = "GET", target: str = "/notes", headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> Any:
    request = HttpRequest(method, target, headers or [("Host", "localhost:3000")], body, "127.0.0.1", 3000)
    match = match_route(API_ROUTES, method, request.raw_path)
    assert match is not None
    return http_api_event(
        request, match, request_id="AbCdEfGhIjKlMnO=", trace_root="1-00000000-000000000000000000000000", now=0
    )


@pytest.mark.parametrize(
    ("method", "path", "route_key", "parameters"),
    [
        ("GET", "/health", "GET /health", {}),
        ("POST", "/notes", "POST /notes", {}),
        ("GET", "/notes/0d8f%20x", "GET /notes/{id}", {"id": "0d8f x"}),
        ("DELETE", "/notes/abc", "DELETE /notes/{id}", {}),
        ("PUT", "/notes/abc", "$default", {}),
        ("GET", "/notes/abc/extra", "$default", {}),
        ("GET", "/", "$default", {}),
    ],
)
def test_the_templates_routes_match_as_api_gateway_matches_them(
    method: str, path: str, route_key: str, parameters: dict[str, str]
) -> None:
    match = match_route(API_ROUTES, method, path)
    assert match is not None
    assert match.route.route_key == route_key
    if parameters:
        assert match.path_parameters == parameters


def test_the_most_specific_route_wins_and_without_default_nothing_matches() -> None:
    routes = [
        ("F", HttpRoute("ANY", "/{proxy+}")),
        ("F", HttpRoute("ANY", "/items/{id}")),
        ("F", HttpRoute("GET", "/items/{id}")),
        ("F", HttpRoute("GET", "/items/special")),
    ]

    def key(method: str, path: str) -> str | None:
        match = match_route(routes, method, path)
        return match.route.route_key if match else None

    assert key("GET", "/items/special") == "GET /items/special"
    assert key("GET", "/items/7") == "GET /items/{id}"
    assert key("POST", "/items/7") == "ANY /items/{id}"
    assert key("POST", "/a/b/c") == "ANY /{proxy+}"
    assert match_route(routes, "GET", "/a/b")  # greedy takes several segments
    assert key("GET", "/") is None


def test_the_event_passes_the_apps_own_shape_check_and_has_the_sample_events_fields() -> None:
    event = _event("GET", "/health")
    assert check_http_api_event(event) == event
    sample = load_event("api-01-health")
    assert set(event) <= set(sample)
    assert set(event["requestContext"]) <= set(sample["requestContext"])
    assert set(event["requestContext"]["http"]) == set(sample["requestContext"]["http"])
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "GET /health"
    assert event["requestContext"]["stage"] == "$default"
    assert event["requestContext"]["time"] == "01/Jan/1970:00:00:00 +0000"
    assert event["requestContext"]["timeEpoch"] == 0
    assert (event["requestContext"]["domainName"], event["requestContext"]["domainPrefix"]) == (
        "localhost",
        "localhost",
    )


def test_headers_are_lower_cased_with_repeats_comma_joined_and_cookies_split_out() -> None:
    event = _event(
        headers=[
            ("Host", "localhost:3000"),
            ("X-Tag", "a"),
            ("x-tag", "b"),
            ("Cookie", "one=1; two=2"),
            ("Cookie", "three=3"),
            ("Connection", "keep-alive"),
            ("X-Forwarded-For", "10.9.8.7"),
        ]
    )
    headers = event["headers"]
    assert headers["x-tag"] == "a,b"
    assert event["cookies"] == ["one=1", "two=2", "three=3"]
    assert "cookie" not in headers
    assert "connection" not in headers
    assert headers["x-forwarded-for"] == "10.9.8.7, 127.0.0.1"
    assert (headers["x-forwarded-port"], headers["x-forwarded-proto"]) == ("3000", "http")
    assert headers["x-amzn-trace-id"] == "Root=1-00000000-000000000000000000000000"


def test_query_parameters_are_decoded_with_repeats_comma_joined_and_the_raw_string_kept() -> None:
    event = _event(target="/notes?limit=1&limit=2&cursor=a%2Fb&flag")
    assert event["rawQueryString"] == "limit=1&limit=2&cursor=a%2Fb&flag"
    assert event["queryStringParameters"] == {"limit": "1,2", "cursor": "a/b", "flag": ""}
    assert "queryStringParameters" not in _event(target="/notes")


@pytest.mark.parametrize(
    ("content_type", "body", "base64_encoded"),
    [
        ("application/json", b'{"title": "x"}', False),
        ("application/json; charset=utf-8", b'{"title": "\xc3\xa9"}', False),
        ("text/plain", b"hello", False),
        ("application/xml", b"<a/>", False),
        ("application/javascript", b"1", False),
        ("application/x-www-form-urlencoded", b"title=x", True),
        ("application/octet-stream", b"\x00\x01", True),
        ("image/png", b"\x89PNG", True),
        (None, b"no content type", True),
        ("application/json", b'{"title": "\xff"}', True),  # not UTF-8: kept byte for byte
    ],
)
def test_only_text_bodies_travel_as_text(content_type: str | None, body: bytes, base64_encoded: bool) -> None:
    headers = [("Host", "localhost:3000"), *([("Content-Type", content_type)] if content_type else [])]
    event = _event("POST", "/notes", headers, body)
    assert event["isBase64Encoded"] is base64_encoded
    decoded = base64.b64decode(event["body"]) if base64_encoded else event["body"].encode()
    assert decoded == body


def test_a_request_without_body_has_no_body_field() -> None:
    event = _event("GET", "/notes")
    assert "body" not in event
    assert event["isBase64Encoded"] is False


def test_a_response_without_status_code_is_inferred_as_200_json() -> None:
    for returned in ({"hello": "world"}, [1, 2], 3, None):
        payload = json.dumps(returned).encode()
        response = gateway_response(payload, api_request_id="r")
        assert (response.status, response.body) == (200, payload)
        assert ("content-type", "application/json") in response.headers
    text = gateway_response(b'"plain words"', api_request_id="r")
    assert (text.status, text.body) == (200, b"plain words")


def test_a_structured_response_sets_status_headers_cookies_and_decodes_base64() -> None:
    payload = {
        "statusCode": 201,
        "headers": {"content-type": "text/plain", "x-count": 2, "x-flag": True},
        "multiValueHeaders": {"x-multi": ["a", "b"]},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\x00bytes").decode(),
        "isBase64Encoded": True,
    }
    response = gateway_response(json.dumps(payload).encode(), api_request_id="req")
    assert response.status == 201
    assert response.body == b"\x00bytes"
    assert response.headers == [
        ("content-type", "text/plain"),
        ("x-count", "2"),
        ("x-flag", "true"),
        ("x-multi", "a"),
        ("x-multi", "b"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2"),
        ("apigw-requestid", "req"),
    ]
    empty = gateway_response(b'{"statusCode": 204}', api_request_id="r")
    assert (empty.status, empty.body) == (204, b"")


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"statusCode": "200"}',
        b'{"statusCode": true}',
        b'{"statusCode": 99}',
        b'{"statusCode": 200, "body": {"a": 1}}',
        b'{"statusCode": 200, "body": "%%%", "isBase64Encoded": true}',
        b'{"statusCode": 200, "headers": ["x"]}',
        b'{"statusCode": 200, "cookies": "a=1"}',
        b'{"statusCode": 200, "headers": {"x": {"nested": 1}}}',
    ],
)
def test_a_response_api_gateway_cannot_read_is_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        gateway_response(payload, api_request_id="r")


def test_api_gateways_own_answers_are_a_json_message() -> None:
    response = gateway_error(503, "Service Unavailable")
    assert (response.status, json.loads(response.body)) == (503, {"message": "Service Unavailable"})
    assert DEFAULT.route.route_key == "$default"
