"""Cursors through the real handler and database: only issued ones are served; anything else is 400 invalid_cursor."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devtools.events import load_event, with_query
from devtools.testing.lambda_runtime import FakeLambdaContext
from handlers.api import handler

NIL = "00000000-0000-0000-0000-000000000000"


def _token(created_at: str, note_id: str = NIL) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, note_id]).encode()).decode().rstrip("=")


def list_with(cursor: str) -> tuple[int, dict[str, object]]:
    response = handler(with_query(load_event("api-07-list-notes"), limit="2", cursor=cursor), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_the_out_of_range_cursors_of_the_report_are_400_not_500(created_at: str, serverless_for_module: None) -> None:
    status, body = list_with(_token(created_at))
    assert (status, body["error"]["code"]) == (400, "invalid_cursor")  # type: ignore[index]


def test_an_issued_cursor_is_served(serverless_for_module: None) -> None:
    response = handler(with_query(load_event("api-07-list-notes"), limit="1"), FakeLambdaContext())
    issued = json.loads(response["body"])["next_cursor"]
    assert issued is not None, "the database has fewer than two notes; other tests create plenty"
    status, page = list_with(issued)
    assert status == 200, page


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
tokens = st.one_of(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", min_size=1, max_size=200),
    st.builds(
        lambda moment, note_id: _token(moment.isoformat(), str(note_id)),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59), timezones=offsets),
        st.uuids(),
    ),
)


@given(cursor=tokens)
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(cursor=_token("0001-01-01T00:00:00+14:00"))
def test_any_token_is_a_page_or_400_invalid_cursor(cursor: str, serverless_for_module: None) -> None:
    status, body = list_with(cursor)
    assert status in (200, 400), body
    if status == 400:
        assert body["error"]["code"] == "invalid_cursor"  # type: ignore[index]
