"""What the notes API and the scheduled handler decide before touching the database (network is blocked here)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st

from devtools.events import event_names, load_event, with_header, with_json_body, with_query
from devtools.testing.lambda_runtime import FakeLambdaContext
from handlers.api import handler as api_handler
from handlers.scheduled import handler as scheduled_handler
from lib.dbkit.errors import DatabaseUnavailableError, InvalidEventError
from lib.dbkit.lambda_events import check_http_api_event

import lib.sample_app.api
from lib.sample_app.errors import InvalidCursorError
from lib.sample_app.notes import Cursor

# Top-level and requestContext keys of `sam local generate-event apigateway http-api-proxy` (SAM CLI 1.x).
SAM_HTTP_API_KEYS = {
    "version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers", "queryStringParameters",
    "requestContext", "body", "pathParameters", "isBase64Encoded", "stageVariables",
}  # fmt: skip
SAM_REQUEST_CONTEXT_KEYS = {
    "accountId", "apiId", "authentication", "authorizer", "domainName", "domainPrefix", "http", "requestId",
    "routeKey", "stage", "time", "timeEpoch",
}  # fmt: skip
# `sam local generate-event cloudwatch scheduled-event`
SAM_SCHEDULED_KEYS = {"id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = api_handler(event, FakeLambdaContext())
    body = json.loads(response["body"]) if response["body"] else None
    return response["statusCode"], response["headers"], body


def create(body: Any) -> tuple[int, dict[str, str], Any]:
    return invoke(with_json_body(load_event("api-02-create-note"), body))


def assert_error_shape(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def reasons(body: Any) -> dict[str, str]:
    return {detail["field"]: detail["reason"] for detail in body["error"]["details"]}


@pytest.mark.parametrize("name", event_names("api-"))
def test_http_events_have_the_shape_sam_generates(name: str) -> None:
    event = load_event(name)
    assert set(event) == SAM_HTTP_API_KEYS
    assert set(event["requestContext"]) == SAM_REQUEST_CONTEXT_KEYS
    assert event["version"] == "2.0"
    assert event["requestContext"]["http"]["path"] == event["rawPath"]


@pytest.mark.parametrize("name", event_names("api-"))
def test_every_sample_http_event_passes_the_kits_event_check_unchanged(name: str) -> None:
    event = load_event(name)
    assert check_http_api_event(copy.deepcopy(event)) == event


@pytest.mark.parametrize("name", event_names("scheduled-"))
def test_scheduled_events_have_the_shape_eventbridge_sends(name: str) -> None:
    assert set(load_event(name)) >= SAM_SCHEDULED_KEYS


def test_event_names_follow_the_function_routing_convention() -> None:
    names = event_names()
    assert names
    assert all(name.startswith(("api-", "scheduled-")) for name in names)


def test_blank_title_unknown_field_and_short_ttl_are_each_reported_by_field() -> None:
    status, _, body = invoke(load_event("api-13-create-note-invalid-fields"))
    assert status == 422
    assert_error_shape(body, "validation_error")
    assert set(reasons(body)) == {"title", "ttl_seconds", "colour"}
    assert "at least 1 character" in reasons(body)["title"]
    assert "greater than or equal to 60" in reasons(body)["ttl_seconds"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "body": "x" * 10_001}, "body"),
        ({"title": "ok", "ttl_seconds": 31_536_001}, "ttl_seconds"),
        ({"title": "ok", "ttl_seconds": "120"}, "ttl_seconds"),
        ({"title": "ok", "ttl_seconds": 120.0}, "ttl_seconds"),
        ({"title": "ok", "ttl_seconds": True}, "ttl_seconds"),
        ({"title": 42}, "title"),
        ({"body": "no title"}, "title"),
        ({"title": "nul \x00 inside"}, "title"),
        ({"title": "ok", "body": "lone surrogate \ud800"}, "body"),
    ],
)
def test_invalid_note_fields_are_422_naming_the_field(payload: dict[str, Any], field: str) -> None:
    status, _, body = create(payload)
    assert status == 422
    assert_error_shape(body, "validation_error")
    assert field in reasons(body)


def test_a_json_array_body_is_422_about_the_request_body() -> None:
    status, _, body = create(["title"])
    assert status == 422
    assert "request body" in reasons(body)


def test_idempotency_key_longer_than_255_is_422_naming_the_header() -> None:
    event = with_header(load_event("api-02-create-note"), "Idempotency-Key", "k" * 256)
    status, _, body = invoke(event)
    assert status == 422
    assert "Idempotency-Key" in reasons(body)


@pytest.mark.parametrize("key", ["clé-1", "tab\there", "emoji 🙂"])
def test_idempotency_key_outside_printable_ascii_is_422_naming_the_header(key: str) -> None:
    status, _, body = invoke(with_header(load_event("api-02-create-note"), "Idempotency-Key", key))
    assert status == 422
    assert "Idempotency-Key" in reasons(body)


def test_malformed_json_is_400_saying_where() -> None:
    status, _, body = invoke(load_event("api-14-create-note-malformed-json"))
    assert status == 400
    assert_error_shape(body, "invalid_json")
    assert "character" in body["error"]["message"]


def test_invalid_utf8_is_400_saying_so() -> None:
    status, _, body = invoke(load_event("api-16-create-note-invalid-utf8"))
    assert status == 400
    assert_error_shape(body, "invalid_json")
    assert "UTF-8" in body["error"]["message"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_a_body_not_declared_as_json_is_415(content_type: str | None) -> None:
    event = load_event("api-15-create-note-wrong-content-type")
    if content_type is None:
        del event["headers"]["content-type"]
    else:
        event["headers"]["content-type"] = content_type
    status, _, body = invoke(event)
    assert status == 415
    assert_error_shape(body, "unsupported_media_type")


def test_json_with_a_charset_parameter_is_accepted_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lib.sample_app.api, "run_in_session", _raising(DatabaseUnavailableError("down", retry_after=1)))
    event = with_header(load_event("api-02-create-note"), "content-type", "application/json; charset=utf-8")
    status, _, _ = invoke(event)
    assert status == 503  # got past validation to the (stubbed, unavailable) database


def test_unknown_route_is_404_in_the_error_shape() -> None:
    status, _, body = invoke(load_event("api-17-unknown-route"))
    assert status == 404
    assert_error_shape(body, "not_found")


def test_wrong_method_is_405_listing_every_allowed_method() -> None:
    status, headers, body = invoke(load_event("api-18-method-not-allowed"))
    assert status == 405
    assert_error_shape(body, "method_not_allowed")
    assert headers["allow"] == "DELETE, GET, HEAD"


def test_malformed_note_id_is_422() -> None:
    status, _, body = invoke(load_event("api-11-get-note-malformed-id"))
    assert status == 422
    assert "note_id" in reasons(body)


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_limit_outside_1_to_100_is_422(limit: str) -> None:
    status, _, body = invoke(with_query(load_event("api-07-list-notes"), limit=limit))
    assert status == 422
    assert "limit" in reasons(body)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        base64.urlsafe_b64encode(b'["2025-01-01T00:00:00", "not-a-uuid"]').decode(),
        base64.urlsafe_b64encode(b'["2025-01-01T00:00:00", "6f1c2a9e-3b7d-4e58-9a0c-2d4b8e7f1a35"]').decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        "%%%",
    ],
)
def test_a_cursor_this_api_did_not_issue_is_400_naming_the_cursor(cursor: str) -> None:
    status, _, body = invoke(with_query(load_event("api-07-list-notes"), limit="2", cursor=cursor))
    assert status == 400
    assert_error_shape(body, "invalid_cursor")
    assert "cursor" in reasons(body)


@pytest.mark.parametrize("value", ["yesterday", "", "0/1,0/2", "16/B374D848' or true --", "9" * 2000])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_malformed_read_after_header_is_400_naming_it_before_any_sql(value: str, method: str) -> None:
    # The network is blocked here: the answer comes before the unit of work would connect.
    for event in (load_event("api-07-list-notes"), load_event("api-10-get-note-unknown-id")):
        event["requestContext"]["http"]["method"] = method
        status, _, body = invoke(with_header(event, "Read-After", value))
        assert status == 400
        if method == "GET":
            assert_error_shape(body, "invalid_read_after")
            assert "send back a write's Read-After value unchanged" in body["error"]["message"]
            assert reasons(body)["Read-After"] == body["error"]["message"]


def test_the_sample_event_with_a_malformed_read_after_is_400() -> None:
    status, _, body = invoke(load_event("api-19-list-notes-malformed-read-after"))
    assert status == 400
    assert_error_shape(body, "invalid_read_after")
    assert "'yesterday' is not a WAL position" in body["error"]["message"]


@given(
    created_at=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)),
    note_id=st.uuids(),
)
def test_cursor_round_trips_exactly(created_at: datetime, note_id: UUID) -> None:
    cursor = Cursor(created_at=created_at, id=note_id)
    token = cursor.encode()
    assert Cursor.decode(token) == cursor
    assert token.isascii()
    assert "=" not in token


def test_cursor_without_time_zone_is_refused() -> None:
    token = base64.urlsafe_b64encode(json.dumps(["2025-01-01T00:00:00", str(uuid4())]).encode()).decode()
    with pytest.raises(InvalidCursorError):
        Cursor.decode(token)


def _raising(error: Exception) -> Callable[..., Any]:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    return fail


def test_health_is_503_with_retry_after_when_the_ping_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        lib.sample_app.api, "ping", _raising(DatabaseUnavailableError("no route to host", retry_after=2))
    )
    status, headers, body = invoke(load_event("api-01-health"))
    assert status == 503
    assert headers["retry-after"] == "2"
    assert_error_shape(body, "database_unavailable")


@pytest.mark.parametrize(
    "event",
    [
        {"source": "aws.s3", "detail-type": "Object Created", "id": "x"},
        {"source": "aws.events", "detail-type": "Object Created", "id": "x"},
        {"source": "aws.events", "detail-type": "Scheduled Event"},
        {"source": "aws.events", "detail-type": "Scheduled Event", "id": ""},
        {},
        [],
        "Scheduled Event",
    ],
)
def test_scheduled_handler_refuses_other_events_before_any_sql(event: Any) -> None:
    # The network is blocked in unit tests: reaching SQL would raise NetworkBlockedError instead.
    with pytest.raises(InvalidEventError, match="expected an EventBridge Scheduled Event"):
        scheduled_handler(event, FakeLambdaContext(function_name="PurgeFunction"))


def test_scheduled_handler_names_what_it_got_for_the_sample_wrong_event() -> None:
    with pytest.raises(InvalidEventError, match=r"source 'aws\.s3', detail-type 'Object Created'"):
        scheduled_handler(load_event("scheduled-02-wrong-event-type"), FakeLambdaContext())


def test_the_openapi_document_lists_every_error_response_that_no_route_builds_at_init() -> None:
    app = lib.sample_app.api.create_app()
    # FastAPI builds a model field per documented response as a route is added: none here, so none at INIT (for
    # every route, however many the app has: adding one must not need an edit here).
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    assert len(routes) >= 5
    assert [route.response_fields for route in routes] == [{}] * len(routes)
    operation = app.openapi()["paths"]["/notes/{note_id}"]["get"]
    documented = {status for status, response in operation["responses"].items() if "ErrorOut" in json.dumps(response)}
    assert documented == {"400", "404", "409", "413", "414", "415", "422", "431", "500", "503"}
    assert app.openapi() is app.openapi()


def test_the_openapi_document_names_the_read_after_header_of_writes_and_reads() -> None:
    paths = lib.sample_app.api.create_app().openapi()["paths"]
    for path, method, status in (("/notes", "post", "201"), ("/notes/{note_id}", "delete", "204")):
        assert "Read-After" in paths[path][method]["responses"][status]["headers"], (path, method)
    for path in ("/notes", "/notes/{note_id}"):
        headers = [p["name"] for p in paths[path]["get"]["parameters"] if p["in"] == "header"]
        assert headers == ["Read-After"], path
