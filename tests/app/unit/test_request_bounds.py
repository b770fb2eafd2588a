"""The notes API's own bounds: its body limit, cursors, page sizes, Idempotency-Keys (the kit's: tests/kit/unit)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devtools.events import load_event, with_header, with_json_body, with_query
from devtools.testing.lambda_runtime import FakeLambdaContext
from handlers.api import handler as api_handler
from lib.dbkit.errors import DatabaseUnavailableError

import lib.sample_app.api
from lib.sample_app.api import MAX_REQUEST_BYTES, MAX_TITLE
from lib.sample_app.errors import InvalidCursorError
from lib.sample_app.notes import Cursor

ERROR_ANSWER_LIMIT = 4 * 1024


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    response = api_handler(event, FakeLambdaContext())
    return response["statusCode"], response["headers"], response["body"] or ""


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise DatabaseUnavailableError("stubbed: the request got past validation", retry_after=1)


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests that pass validation answer 503 here (the network is blocked in unit tests anyway)."""
    monkeypatch.setattr(lib.sample_app.api, "run_in_session", _unavailable)
    monkeypatch.setattr(lib.sample_app.api, "ping", _unavailable)


def test_100000_unknown_fields_get_a_small_413_not_a_7_mb_422() -> None:
    event = with_json_body(load_event("api-02-create-note"), {"title": "x", **{f"f{i}": i for i in range(100_000)}})
    assert len(event["body"]) > 1_000_000
    status, _, body = invoke(event)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert len(body) < ERROR_ANSWER_LIMIT


@pytest.mark.parametrize("declared", [str(MAX_REQUEST_BYTES + 1), "9" * 40])
def test_a_declared_content_length_over_the_limit_is_413_before_reading(declared: str) -> None:
    event = with_header(load_event("api-02-create-note"), "content-length", declared)
    status, _, body = invoke(event)
    assert (status, json.loads(body)["error"]["code"]) == (413, "payload_too_large")


def test_a_body_over_the_limit_is_413_even_when_content_length_says_less() -> None:
    event = with_json_body(load_event("api-02-create-note"), {"title": "t", "body": "b" * MAX_REQUEST_BYTES})
    event["headers"]["content-length"] = "10"
    status, _, body = invoke(event)
    assert (status, json.loads(body)["error"]["code"]) == (413, "payload_too_large")


def test_the_largest_valid_note_fully_escaped_is_under_the_body_limit(no_database: None) -> None:
    astral = "\U0001f642"  # one character, a 12-byte surrogate-pair escape in ASCII JSON
    payload = {"title": astral * MAX_TITLE, "body": astral * 10_000, "ttl_seconds": 31_536_000}
    event = with_json_body(load_event("api-02-create-note"), payload)  # json.dumps escapes: ensure_ascii
    assert len(event["body"]) <= MAX_REQUEST_BYTES
    status, _, _ = invoke(event)
    assert status == 503  # past every check, to the (stubbed) database


def _token(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


NIL = "00000000-0000-0000-0000-000000000000"
OUT_OF_RANGE = [
    _token(["0001-01-01T00:00:00+14:00", NIL]),
    _token(["9999-12-31T23:59:59-14:00", NIL]),
]


@pytest.mark.parametrize("cursor", OUT_OF_RANGE, ids=["year-1-at-plus-14", "year-9999-at-minus-14"])
def test_an_out_of_range_cursor_time_is_400_invalid_cursor(cursor: str) -> None:
    status, _, body = invoke(with_query(load_event("api-07-list-notes"), cursor=cursor))
    assert (status, json.loads(body)["error"]["code"]) == (400, "invalid_cursor")


@pytest.mark.parametrize(
    "cursor",
    [
        _token(["2025-01-01T01:00:00+01:00", NIL]),  # the same instant as an issued cursor, spelled differently
        _token(["2025-01-01T00:00:00+00:00", NIL.upper()]),
        _token(["2025-01-01T00:00:00+00:00", NIL]) + "==",
        _token(["2025-01-01T00:00:00+00:00", NIL, "extra"]),
    ],
)
def test_cursors_in_any_spelling_but_the_issued_one_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        Cursor.decode(cursor)


def _assert_issued_or_refused(token: str) -> None:
    try:
        cursor = Cursor.decode(token)
    except InvalidCursorError:
        return
    assert cursor.encode() == token
    assert cursor.created_at.utcoffset() == timedelta(0)


@given(st.text(max_size=300))
@example(OUT_OF_RANGE[0])
@example(OUT_OF_RANGE[1])
def test_any_text_decodes_to_the_cursor_that_spells_it_or_is_refused(token: str) -> None:
    _assert_issued_or_refused(token)


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59), timezones=offsets),
    note_id=st.uuids(),
    spacing=st.sampled_from([(",", ":"), (", ", ": ")]),
)
def test_any_cursor_shaped_token_decodes_to_its_own_spelling_or_is_refused(
    moment: datetime, note_id: Any, spacing: tuple[str, str]
) -> None:
    raw = json.dumps([moment.isoformat(), str(note_id)], separators=spacing).encode()
    _assert_issued_or_refused(base64.urlsafe_b64encode(raw).decode().rstrip("="))


@given(moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets))
def test_an_issued_cursor_decodes_to_the_same_instant_in_utc(moment: datetime) -> None:
    cursor = Cursor.decode(Cursor(moment, UUID(NIL)).encode())
    assert cursor.created_at == moment
    assert cursor.created_at.tzinfo is UTC


@pytest.mark.parametrize("limit", ["1_0", "+5", "5.0", " 5 ", "5 ", "\u0665", "0x10", "-0", "5e0"])
def test_page_size_must_be_plain_decimal_digits(limit: str) -> None:
    status, _, body = invoke(with_query(load_event("api-07-list-notes"), limit=limit))
    error = json.loads(body)["error"]
    assert (status, error["details"][0]["field"]) == (422, "limit")


@pytest.mark.parametrize("limit", ["5", "005", "100"])
def test_plain_decimal_page_sizes_pass(limit: str, no_database: None) -> None:
    status, _, _ = invoke(with_query(load_event("api-07-list-notes"), limit=limit))
    assert status == 503


@pytest.mark.parametrize("key", [" ", "   ", " " * 255])
def test_an_idempotency_key_of_spaces_is_422(key: str) -> None:
    status, _, body = invoke(with_header(load_event("api-02-create-note"), "Idempotency-Key", key))
    assert status == 422
    assert "Idempotency-Key" in {detail["field"] for detail in json.loads(body)["error"]["details"]}


def test_an_idempotency_key_with_inner_spaces_passes(no_database: None) -> None:
    status, _, _ = invoke(with_header(load_event("api-02-create-note"), "Idempotency-Key", " order 7 "))
    assert status == 503
