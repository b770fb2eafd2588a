"""Oversized or sloppy requests are refused small and early (before any route runs), and HEAD is answered as GET."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devtools.testing.error_shape import assert_error_shape
from lib.dbkit.http.errors import MAX_ERROR_BYTES, MAX_ERROR_DETAILS
from tests.kit.tiny_api import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_URL_BYTES,
    Answer,
    TinyApi,
    event,
    invoke,
    json_event,
    tiny_api,
)

JSON = [("content-type", "application/json")]


@pytest.fixture
def api() -> TinyApi:
    return tiny_api()


def refused(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer.body[:300]
    assert_error_shape(status, answer.json())
    assert answer.json()["error"]["code"] == code
    assert len(answer.body) <= MAX_ERROR_BYTES


def test_a_body_over_the_limit_is_413_before_any_route_runs(api: TinyApi) -> None:
    answer = invoke(api.app, json_event("POST", "/items", {"name": "x", **{f"f{i}": i for i in range(10_000)}}))
    refused(answer, 413, "payload_too_large")
    assert str(MAX_BODY_BYTES) in answer.json()["error"]["message"]
    assert api.ran == []


@pytest.mark.parametrize("declared", [str(MAX_BODY_BYTES + 1), "9" * 40])
def test_a_declared_content_length_over_the_limit_is_413_before_reading(api: TinyApi, declared: str) -> None:
    request = json_event("POST", "/items", {"name": "small"}, headers=[("content-length", declared)])
    refused(invoke(api.app, request), 413, "payload_too_large")
    assert api.ran == []


def test_a_body_over_the_limit_is_413_even_when_content_length_says_less(api: TinyApi) -> None:
    request = json_event("POST", "/items", {"name": "x" * MAX_BODY_BYTES}, headers=[("content-length", "10")])
    refused(invoke(api.app, request), 413, "payload_too_large")
    assert api.ran == []


def test_a_body_at_the_limit_is_read_and_validated(api: TinyApi) -> None:
    body = json.dumps({"name": "x"}).encode()
    padded = body[:-1] + b" " * (MAX_BODY_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_BODY_BYTES
    answer = invoke(api.app, event("POST", "/items", headers=JSON, body=padded))
    assert answer.status == 201
    assert api.ran == ["create"]


def test_a_url_over_the_limit_is_414_before_routing(api: TinyApi) -> None:
    query = "&".join(["limit=1"] * (MAX_URL_BYTES // 8 + 1))
    refused(invoke(api.app, event("GET", f"/items?{query}")), 414, "uri_too_long")
    assert api.ran == []


def test_headers_over_the_limit_are_431_before_routing(api: TinyApi) -> None:
    headers = [(f"x-h{i}", "v" * 100) for i in range(MAX_HEADER_BYTES // 100)]
    refused(invoke(api.app, event("GET", "/items", headers=headers)), 431, "request_header_fields_too_large")
    assert api.ran == []


def test_a_422_with_thousands_of_problems_lists_a_bounded_number_of_them(api: TinyApi) -> None:
    answer = invoke(api.app, json_event("POST", "/items", {"name": "x", **{f"f{i}": i for i in range(500)}}))
    refused(answer, 422, "validation_error")
    error = answer.json()["error"]
    assert len(error["details"]) == MAX_ERROR_DETAILS
    assert f"{500 - MAX_ERROR_DETAILS} more problems not listed" in error["message"]


def test_an_error_answer_fits_even_when_every_detail_is_long_and_escaped(api: TinyApi) -> None:
    # Control characters cost 6 bytes each in JSON: six details of them would not fit without dropping some.
    payload = {"name": "x", **{f"\x01{i:03}" + "\x01" * 180: i for i in range(6)}}
    answer = invoke(api.app, json_event("POST", "/items", payload))
    refused(answer, 422, "validation_error")
    error = answer.json()["error"]
    assert 0 < len(error["details"]) < 6
    assert f"{6 - len(error['details'])} more problems not listed" in error["message"]


def test_error_texts_are_clipped_whatever_the_path_length(api: TinyApi) -> None:
    answer = invoke(api.app, event("GET", "/" + "p" * (MAX_URL_BYTES - 1)))
    refused(answer, 404, "not_found")


HEAD_CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "a list": lambda: event("GET", "/items?limit=3"),
    "one item": lambda: event("GET", "/items/7"),
    "a domain error": lambda: event("GET", "/items/0"),
    "a validation error": lambda: event("GET", "/items?limit=0"),
    "no route": lambda: event("GET", "/nothing"),
}


@pytest.mark.parametrize("name", HEAD_CASES)
def test_head_answers_like_get_without_a_body(api: TinyApi, name: str) -> None:
    got = invoke(api.app, HEAD_CASES[name]())
    head_event = HEAD_CASES[name]()
    head_event["requestContext"]["http"]["method"] = "HEAD"
    head = invoke(api.app, head_event)
    assert (head.status, head.body) == (got.status, b"")
    assert head.headers == got.headers
    assert got.body


@pytest.mark.parametrize("path", ["/items/", "/health/", "/items/7/"])
def test_a_trailing_slash_is_404_never_a_redirect_built_from_the_host_header(api: TinyApi, path: str) -> None:
    answer = invoke(api.app, event("GET", path, headers=[("host", "evil.example")]))
    refused(answer, 404, "not_found")
    assert "location" not in answer.headers


SHAPES = (
    "unknown fields",
    "long name",
    "huge number",
    "deep nesting",
    "long array",
    "many keys nested",
    "long path",
    "long query value",
    "many query parameters",
    "long header",
    "many headers",
    "long content type",
)


def _hostile(shape: str, size: int, method: str) -> dict[str, Any]:
    raw = None
    path, query, headers = "/items", "", list(JSON)
    if shape == "unknown fields":
        raw = json.dumps({"name": "x", **{f"f{i}": i for i in range(size // 10)}})
    elif shape == "long name":
        raw = json.dumps({"name": "\U0001f642" * (size // 12)})
    elif shape == "huge number":
        raw = '{"name": "x", "count": ' + "9" * size + "}"
    elif shape == "deep nesting":
        raw = '{"name": ' + "[" * (size // 2) + "]" * (size // 2) + "}"
    elif shape == "long array":
        raw = json.dumps({"name": [0] * (size // 3)})
    elif shape == "many keys nested":
        raw = json.dumps({"name": {f"k{i}": {"a": i} for i in range(size // 20)}})
    elif shape == "long path":
        path = "/items/" + "a" * size
    elif shape == "long query value":
        query = "token=" + "A" * size
    elif shape == "many query parameters":
        query = "&".join(["limit=1"] * (size // 8))
    elif shape == "long header":
        headers.append(("x-tag", "t" * size))
    elif shape == "many headers":
        headers.extend((f"x-h{i}", "v") for i in range(size // 12))
    elif shape == "long content type":
        headers[0] = ("content-type", "application/json; x=" + "y" * size)
    target = f"{path}?{query}" if query else path
    return event(method, target, headers=headers, body=raw if raw is not None else json.dumps({"name": "x"}))


@given(
    shape=st.sampled_from(SHAPES),
    size=st.integers(0, 4 * MAX_BODY_BYTES),
    method=st.sampled_from(["GET", "POST", "DELETE", "HEAD", "PUT"]),
)
@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@example(shape="unknown fields", size=MAX_BODY_BYTES - 200, method="POST")  # just under the limit: a big 422
@example(shape="long path", size=MAX_URL_BYTES - 20, method="GET")
def test_every_hostile_request_gets_a_small_answer_in_the_one_shape(shape: str, size: int, method: str) -> None:
    answer = invoke(tiny_api().app, _hostile(shape, size, method))
    assert answer.status < 500, answer.body[:300]
    if answer.status >= 400 and method != "HEAD":
        assert_error_shape(answer.status, answer.json())
        assert len(answer.body) <= MAX_ERROR_BYTES
