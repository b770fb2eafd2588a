"""Bad input through the Lambda handlers on the real database: clear 4xx answers or errors, never a partial write.

What the kit refuses before any route runs (wrong media types, invalid UTF-8, the error shape itself) is tested
against a tiny app of its own in tests/kit/unit/test_http_errors.py and test_http_limits.py.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devtools.events import load_event, with_header, with_json_body, with_path_parameter, with_query
from devtools.testing.database import DatabaseTarget
from devtools.testing.error_shape import assert_error_shape
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.logs import captured_logs
from devtools.testing.secrets import assert_no_secret
from handlers.api import handler as api_handler
from handlers.scheduled import handler as scheduled_handler
from lib.dbkit.errors import InvalidEventError

# Every test reads or writes the notes tables (the `direct` engine included).
pytestmark = pytest.mark.usefixtures("schema")
SQL_LOOKING = [
    "'; DROP TABLE notes; --",
    "Robert'); DROP TABLE students;--",
    "' OR '1'='1",
    '" OR ""="',
    "1; SELECT pg_sleep(10)",
    "$1 $2 :title %s %(title)s ?",
    "\\x00 \\' \\\\ E'\\n'",
    "$$ quoted $$ $tag$ body $tag$",
    "/* comment */ -- comment",
    "🙂 ünïcödé ‮ right-to-left",
]


@pytest.fixture
def app(database: DatabaseTarget, direct: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseTarget]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    with captured_logs() as logs:
        yield database
    reset_database_state()
    assert_no_secret(database.password, *logs.lines)


def invoke(event: Any) -> tuple[int, dict[str, str], Any]:
    response = api_handler(event, FakeLambdaContext(timeout_ms=10_000))
    raw = response.get("body") or ""
    body = json.loads(raw) if raw else None
    if response["statusCode"] >= 400:
        assert_error_shape(response["statusCode"], body)
    return response["statusCode"], response["headers"], body


def table_state(direct: Engine) -> tuple[int, list[tuple[Any, ...]]]:
    """Row count of notes and the whole job_leases table: what a partial write would change."""
    with direct.connect() as connection:
        notes = connection.execute(text("SELECT count(*) FROM notes")).scalar_one()
        leases = [tuple(row) for row in connection.execute(text("SELECT * FROM job_leases ORDER BY name"))]
    return int(notes), leases


def create_event(body: Any) -> dict[str, Any]:
    return with_json_body(load_event("api-02-create-note"), body)


def raw_create_event(raw: bytes, content_type: str | None = "application/json") -> dict[str, Any]:
    event = load_event("api-02-create-note")
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    event["headers"]["content-length"] = str(len(raw))
    if content_type is None:
        del event["headers"]["content-type"]
    else:
        event["headers"]["content-type"] = content_type
    return event


@pytest.mark.parametrize(
    ("event", "status", "field"),
    [
        (create_event({"title": "x" * 201}), 422, "title"),
        (create_event({"title": "long body", "body": "b" * 10_001}), 422, "body"),
        (create_event({"title": "t" * 100_000}), 422, "title"),
        (create_event({"title": "extra fields", **{f"f{i}": i for i in range(5_000)}}), 422, None),
        (create_event({"title": "nested", "body": [[[[["deep"]]]]]}), 422, "body"),
        (raw_create_event(b'{"title": ' + b"[" * 60_000 + b"]" * 60_000 + b"}"), 400, None),
        (raw_create_event(b'{"title": "' + b"a" * 100_000), 400, None),
        # Over the 128 KiB body limit: refused before parsing.
        (create_event({"title": "t" * 5_000_000}), 413, None),
        (create_event({"title": "extra fields", **{f"f{i}": i for i in range(100_000)}}), 413, None),
        (raw_create_event(b'{"title": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), 413, None),
        (raw_create_event(b'{"title": "' + b"a" * 1_000_000), 413, None),
    ],
    ids=[
        "title-201",
        "body-10001",
        "title-100KB",
        "5000-extra-fields",
        "nested-body",
        "nesting-60000",
        "unterminated",
        "title-5MB",
        "100000-extra-fields",
        "nesting-100000",
        "unterminated-1MB",
    ],
)
def test_oversized_and_malformed_bodies_are_refused_without_a_write(
    event: dict[str, Any], status: int, field: str | None, app: DatabaseTarget, direct: Engine
) -> None:
    before = table_state(direct)
    answered, _, body = invoke(event)
    assert answered == status
    if field is not None:
        assert field in {detail["field"] for detail in body["error"]["details"]}
    assert table_state(direct) == before


def test_json_with_a_charset_parameter_is_accepted(app: DatabaseTarget) -> None:
    status, _, body = invoke(raw_create_event(b'{"title": "charset ok"}', "application/json; charset=utf-8"))
    assert status == 201
    assert body["title"] == "charset ok"


@pytest.mark.parametrize("text_value", ['"\\ud800 lone surrogate"', '"nul \\u0000 inside"'])
def test_unstorable_text_answers_422(text_value: str, app: DatabaseTarget, direct: Engine) -> None:
    before = table_state(direct)
    status, _, _ = invoke(raw_create_event(b'{"title": ' + text_value.encode() + b"}"))
    assert status == 422
    assert table_state(direct) == before


@pytest.mark.parametrize("limit", ["0", "-1", "101", "1000000", "1" + "0" * 40, "1e3", "NaN", "ten", ""])
def test_huge_or_invalid_page_sizes_answer_422(limit: str, app: DatabaseTarget) -> None:
    status, _, body = invoke(with_query(load_event("api-07-list-notes"), limit=limit))
    assert status == 422
    assert body["error"]["details"][0]["field"] == "limit"


def test_the_largest_page_size_is_served(app: DatabaseTarget) -> None:
    status, _, body = invoke(with_query(load_event("api-07-list-notes"), limit="100"))
    assert status == 200
    assert len(body["items"]) <= 100


@pytest.mark.parametrize("value", SQL_LOOKING)
def test_sql_looking_strings_are_stored_and_returned_verbatim(value: str, app: DatabaseTarget, direct: Engine) -> None:
    title = f"{value} {uuid.uuid4().hex[:8]}"
    # Header values reach the app as latin-1 (HTTP headers are bytes), so only ASCII keys can round-trip verbatim.
    key = f"{value if value.isascii() else 'non-ascii'} {uuid.uuid4()}"
    event = with_header(create_event({"title": title, "body": value}), "Idempotency-Key", key)
    status, _, created = invoke(event)
    assert status == 201
    assert (created["title"], created["body"]) == (title, value)
    status, _, fetched = invoke(with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", created["id"]))
    assert status == 200
    assert (fetched["title"], fetched["body"]) == (title, value)
    with direct.connect() as connection:
        stored = connection.execute(
            text(
                "SELECT n.title, n.body, k.key FROM notes n JOIN idempotency_keys k ON k.note_id = n.id WHERE n.id = :i"
            ),
            {"i": created["id"]},
        ).one()
    assert tuple(stored) == (title, value, key)
    replay_status, headers, replay = invoke(event)
    assert (replay_status, replay["id"], headers.get("idempotent-replayed")) == (201, created["id"], "true")


@pytest.mark.parametrize("value", SQL_LOOKING[:4])
def test_sql_looking_cursors_and_ids_are_refused(value: str, app: DatabaseTarget) -> None:
    status, _, body = invoke(with_query(load_event("api-07-list-notes"), cursor=value))
    assert status == 400
    assert body["error"]["code"] == "invalid_cursor"
    status, _, body = invoke(
        with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", value.replace("/", ""))
    )
    assert status in (404, 422)  # a path with a quote may not even match the route


def _mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    event = copy.deepcopy(load_event("api-02-create-note"))
    event["body"] = json.dumps({"title": f"malformed event {uuid.uuid4().hex[:8]}"})
    change(event)
    return event


def _pop(*path: str) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        target = event
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda event: event.__setitem__(key, value)


MALFORMED_API_EVENTS: dict[str, Any] = {
    "empty object": {},
    "list": [],
    "null": None,
    "string": "POST /notes",
    "scheduled event": load_event("scheduled-01-purge"),
    "no requestContext": _mutated(_pop("requestContext")),
    "no http method": _mutated(_pop("requestContext", "http", "method")),
    "body is an object": _mutated(_set("body", {"title": "x"})),
    "headers null": _mutated(_set("headers", None)),
    "bad base64 body": _mutated(lambda e: e.update(isBase64Encoded=True, body="!!!not base64")),
    "payload 1.0 label on a 2.0 event": _mutated(_set("version", "1.0")),
    "header value an int": _mutated(lambda e: e["headers"].update({"x-count": 1})),
    "header value null": _mutated(lambda e: e["headers"].update({"x-none": None})),
    "header value a list": _mutated(lambda e: e["headers"].update({"x-list": ["a", "b"]})),
    "rawQueryString an int": _mutated(_set("rawQueryString", 5)),
    "cookies [1]": _mutated(_set("cookies", [1])),
    "no sourceIp": _mutated(_pop("requestContext", "http", "sourceIp")),
}


@pytest.mark.parametrize("name", MALFORMED_API_EVENTS)
def test_malformed_api_events_fail_without_a_write(name: str, app: DatabaseTarget, direct: Engine) -> None:
    before = table_state(direct)
    try:
        response = api_handler(copy.deepcopy(MALFORMED_API_EVENTS[name]), FakeLambdaContext(timeout_ms=10_000))
    except Exception as error:  # noqa: BLE001 - any refusal is fine here; its type is the next test's business
        assert_no_secret(app.password, error)
    else:
        assert 400 <= response["statusCode"] < 500, response
        assert_error_shape(response["statusCode"], json.loads(response["body"]))
    assert table_state(direct) == before


def test_malformed_api_events_raise_invalid_event_error(app: DatabaseTarget) -> None:
    raised = {}
    for name, event in MALFORMED_API_EVENTS.items():
        try:
            api_handler(copy.deepcopy(event), FakeLambdaContext(timeout_ms=10_000))
        except Exception as error:  # noqa: BLE001 - collected and compared below
            raised[name] = type(error).__name__
        else:
            raised[name] = "answered"
    assert raised == dict.fromkeys(MALFORMED_API_EVENTS, "InvalidEventError")


MALFORMED_SCHEDULED_EVENTS: dict[str, Any] = {
    "empty object": {},
    "list": [],
    "null": None,
    "http api event": load_event("api-01-health"),
    "wrong detail-type": {**load_event("scheduled-01-purge"), "detail-type": "Object Created"},
    "wrong source": {**load_event("scheduled-01-purge"), "source": "aws.s3"},
    "no id": {key: value for key, value in load_event("scheduled-01-purge").items() if key != "id"},
    "numeric id": {**load_event("scheduled-01-purge"), "id": 7},
}


@pytest.mark.parametrize("name", MALFORMED_SCHEDULED_EVENTS)
def test_malformed_scheduled_events_raise_a_clear_error_without_a_write(
    name: str, app: DatabaseTarget, direct: Engine
) -> None:
    before = table_state(direct)
    with pytest.raises(InvalidEventError, match="expected an EventBridge Scheduled Event") as raised:
        scheduled_handler(copy.deepcopy(MALFORMED_SCHEDULED_EVENTS[name]), FakeLambdaContext(timeout_ms=10_000))
    assert_no_secret(app.password, raised.value)
    assert table_state(direct) == before
