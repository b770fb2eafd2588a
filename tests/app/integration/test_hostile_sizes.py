"""Any request under Lambda's 6 MB limit gets a small answer (< 64 KiB) at a bounded memory cost, on the real stack."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devtools.events import load_event, with_query
from devtools.testing import figures
from devtools.testing.database import DatabaseTarget
from devtools.testing.error_shape import assert_error_shape
from devtools.testing.lambda_runtime import FakeLambdaContext
from devtools.testing.subprocess_run import run_module
from handlers.api import handler
from tests.app.integration.hostile import METHODS, SHAPES, SIZE_BUDGET, hostile_event

MAX_ANSWER_BYTES = 64 * 1024
# The function's response payload (the HTTP answer inside Lambda's JSON, escaped again) is far from Lambda's 6 MB.
MAX_PAYLOAD_BYTES = 256 * 1024
FUNCTION_MEMORY_MIB = 512
# "Well under" the function's memory: half of it, for the whole process (Python, libraries, event and answer).
MAX_PEAK_RSS_MIB = FUNCTION_MEMORY_MIB // 2
largest: dict[str, Any] = {"bytes": 0, "payload_bytes": 0}


def answer_bytes(response: dict[str, Any]) -> int:
    """What the client receives: the body as bytes and the headers (name, ": ", value, CRLF)."""
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return len(raw) + sum(len(name) + len(value) + 4 for name, value in (response.get("headers") or {}).items())


@pytest.fixture(scope="module")
def app(serverless_for_module: None) -> Iterator[None]:
    yield
    if largest["bytes"]:
        figures.record("hostile input", f"largest answer in the property test: {largest}")


@given(shape=st.sampled_from(SHAPES), size=st.integers(0, SIZE_BUDGET), method=st.sampled_from(METHODS))
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(shape="unknown fields", size=SIZE_BUDGET, method="POST")
@example(
    shape="unknown fields", size=120 * 1024, method="POST"
)  # just under the body limit: a 422 with ~9,000 problems
@example(shape="long path", size=15 * 1024, method="GET")
@example(shape="long query value", size=15 * 1024, method="GET")
def test_every_answer_is_under_64_kib(shape: str, size: int, method: str, app: None) -> None:
    event = hostile_event(shape, size, method)
    assert len(json.dumps(event)) < 6 * 1024 * 1024
    response = handler(event, FakeLambdaContext())
    answered, payload = answer_bytes(response), len(json.dumps(response))
    if answered > largest["bytes"]:
        largest.update(bytes=answered, shape=shape, size=size, method=method, status=response["statusCode"])
    largest["payload_bytes"] = max(largest["payload_bytes"], payload)
    assert answered < MAX_ANSWER_BYTES, (shape, size, method, response["statusCode"])
    assert payload < MAX_PAYLOAD_BYTES
    assert response["statusCode"] < 500, response["body"][:300]
    if response["statusCode"] >= 400 and method != "HEAD":
        assert_error_shape(response["statusCode"], json.loads(response["body"]))


@pytest.mark.parametrize("shape", SHAPES)
def test_the_largest_event_of_each_shape_stays_well_under_the_function_memory(
    shape: str, database: DatabaseTarget, schema: None, tmp_path: Path
) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(hostile_event(shape, SIZE_BUDGET)), encoding="utf-8")
    quiet = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
    measured = run_module("tests.app.integration.hostile", str(event_file), database=database, env=quiet)[-1]
    figures.record(
        "hostile input",
        f"{shape}: {event_file.stat().st_size:,} B event → {measured['status']}, {measured['answer_bytes']:,} B "
        f"answer, peak RSS {measured['peak_rss_mib']} MiB ({measured['rss_before_mib']} MiB with the event decoded)",
    )
    assert measured["answer_bytes"] < MAX_ANSWER_BYTES
    assert measured["peak_rss_mib"] < MAX_PEAK_RSS_MIB


def test_a_page_of_the_largest_notes_stays_under_64_kib_and_loses_none(app: None) -> None:
    # Control characters are the costliest text in JSON (\u0001: 6 bytes each), so these are the largest notes.
    label = f"page-bytes {uuid.uuid4().hex[:8]}"
    created = set()
    for number in range(4):
        title = f"{label} {number} " + "\x01" * 170
        event = hostile_event("long body", 0, "POST")
        event["body"] = json.dumps({"title": title, "body": "\x01" * 10_000})
        event["headers"]["content-length"] = str(len(event["body"]))
        response = handler(event, FakeLambdaContext())
        assert response["statusCode"] == 201, response["body"][:300]
        created.add(json.loads(response["body"])["id"])
    seen: list[str] = []
    cursor = None
    while created - set(seen):
        event = load_event("api-07-list-notes")
        with_query(event, limit="100", **({"cursor": cursor} if cursor else {}))
        response = handler(event, FakeLambdaContext())
        assert response["statusCode"] == 200
        assert answer_bytes(response) < MAX_ANSWER_BYTES
        page = json.loads(response["body"])
        assert page["items"], "a page must hold at least one note"
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        assert cursor is not None or not created - set(seen)
    assert len(seen) == len(set(seen))
