"""handlers.api.handler with the sample events against the local stack: status codes, bodies and database state."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from devtools.app_config import load_app_config
from devtools.events import event_names, load_event, with_header, with_json_body, with_path_parameter, with_query
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.urls import pooler_entry
from handlers.api import handler
from lib.dbkit.engine import build_engine, get_engine, run_in_transaction
from lib.dbkit.pg_dbapi import DbapiDialect
from lib.dbkit.pg_pipeline import PipelineDialect
from lib.dbkit.session import run_in_session
from lib.dbkit.settings import Settings

from lib.sample_app import notes

# What each sample event answers when the files run in sorted order (as `make demo` runs them): app.toml's [events],
# which `make demo` and the tooling's tests hold the API to too.
EXPECTED_STATUS = {
    name: expected.status
    for name, expected in load_app_config().events.items()
    if name.startswith("api-") and expected.status is not None
}


@pytest.fixture
def serverless(monkeypatch: pytest.MonkeyPatch, database: DatabaseTarget, schema: None) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    yield
    reset_database_state()


@pytest.mark.usefixtures("serverless")
def test_the_handler_runs_on_the_driver_db_driver_names() -> None:
    # `make pytest` runs this file twice: with the pipelined driver and with DB_DRIVER=stock.
    assert invoke(load_event("api-01-health"))[0] == 200
    expected = DbapiDialect if os.environ.get("DB_DRIVER") == "stock" else PipelineDialect
    assert type(get_engine().dialect) is expected


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = handler(event, FakeLambdaContext())
    body = json.loads(response["body"]) if response["body"] else None
    return response["statusCode"], response["headers"], body


def create(title: str, *, key: str | None = None, **fields: Any) -> tuple[int, dict[str, str], Any]:
    event = with_json_body(load_event("api-02-create-note"), {"title": title, **fields})
    if key is not None:
        with_header(event, "Idempotency-Key", key)
    return invoke(event)


def sql(statement: str, **params: Any) -> list[Any]:
    return run_in_transaction(lambda connection: list(connection.execute(text(statement), params).all()))


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


@pytest.mark.usefixtures("serverless")
def test_every_sample_event_answers_as_documented_in_demo_order() -> None:
    assert set(EXPECTED_STATUS) == set(event_names("api-")), "add the new event file's status to app.toml [events]"
    key = unique("story-key")  # other runs (and the demo) already used the file's key
    for name in event_names("api-"):
        event = load_event(name)
        if "idempotency-key" in event["headers"]:
            with_header(event, "Idempotency-Key", key)
        status, headers, body = invoke(event)
        assert status == EXPECTED_STATUS[name], (name, body)
        assert headers["content-type"] == "application/json"
        if status >= 400:
            assert set(body) == {"error"}, name
            assert {"code", "message", "details"} == set(body["error"]), name
    rows = sql("SELECT n.body FROM idempotency_keys k JOIN notes n ON n.id = k.note_id WHERE k.key = :key", key=key)
    assert [row.body for row in rows] == ["Transfer before the 1st"]  # the 409 wrote nothing


@pytest.mark.usefixtures("serverless")
def test_health_reports_the_database_reachable() -> None:
    status, _, body = invoke(load_event("api-01-health"))
    assert (status, body) == (200, {"status": "ok", "database": "reachable"})


@pytest.mark.usefixtures("serverless")
def test_create_get_delete_round_trip() -> None:
    title = unique("round trip")
    status, headers, created = create(title, body="hello", ttl_seconds=600)
    assert status == 201
    assert headers["location"] == f"/notes/{created['id']}"
    assert "idempotent-replayed" not in headers
    assert (created["title"], created["body"]) == (title, "hello")
    assert created["expires_at"] is not None

    status, _, fetched = invoke(with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", created["id"]))
    assert (status, fetched) == (200, created)

    status, _, body = invoke(with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", created["id"]))
    assert (status, body) == (204, None)
    assert sql("SELECT id FROM notes WHERE id = :id", id=uuid.UUID(created["id"])) == []

    status, _, body = invoke(with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", created["id"]))
    assert status == 404
    assert body["error"]["code"] == "note_not_found"
    status, _, _ = invoke(with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", created["id"]))
    assert status == 404


@pytest.mark.usefixtures("serverless")
def test_body_defaults_to_empty_and_no_ttl_means_no_expiry() -> None:
    status, _, created = create(unique("defaults"))
    assert status == 201
    assert (created["body"], created["expires_at"]) == ("", None)


@pytest.mark.usefixtures("serverless")
def test_same_idempotency_key_twice_returns_the_original_note_and_stores_one_row() -> None:
    key, title = unique("key"), unique("idempotent")
    first_status, first_headers, first = create(title, key=key, body="b", ttl_seconds=120)
    second_status, second_headers, second = create(title, key=key, body="b", ttl_seconds=120)
    assert (first_status, second_status) == (201, 201)
    assert second == first
    assert "idempotent-replayed" not in first_headers
    assert second_headers["idempotent-replayed"] == "true"
    assert len(sql("SELECT id FROM notes WHERE title = :title", title=title)) == 1


@pytest.mark.usefixtures("serverless")
@pytest.mark.parametrize("change", [{"body": "other"}, {"ttl_seconds": 61}, {"title": "+ other title"}])
def test_same_idempotency_key_with_a_different_body_is_409_and_changes_nothing(change: dict[str, Any]) -> None:
    key, title = unique("key"), unique("conflict")
    original: dict[str, Any] = {"title": title, "body": "b", "ttl_seconds": 120}
    if "title" in change:
        change = {"title": f"{title} {change['title']}"}
    status, _, first = create(key=key, **original)
    assert status == 201
    status, _, body = create(key=key, **{**original, **change})
    assert status == 409
    assert body["error"]["code"] == "idempotency_conflict"
    rows = sql("SELECT id, title, body FROM notes WHERE title LIKE :title", title=f"{title}%")
    assert [(str(r.id), r.title, r.body) for r in rows] == [(first["id"], title, "b")]
    kept = sql("SELECT note_id, title, body FROM idempotency_keys WHERE key = :key", key=key)
    assert [(str(r.note_id), r.title, r.body) for r in kept] == [(first["id"], title, "b")]


@pytest.mark.usefixtures("serverless")
def test_a_retry_racing_the_original_request_gets_the_original_note(database: DatabaseTarget) -> None:
    # Request A has inserted the key but not committed; request B (same key) must wait and then replay A's note,
    # even though B's statement snapshot predates A's commit.
    key, title = unique("race-key"), unique("race")
    engine_a = build_engine(Settings.from_env({"DATABASE_URL": database.direct_url}))
    outcome: dict[str, Any] = {}

    def request_b() -> None:
        asyncio.set_event_loop(loop := asyncio.new_event_loop())  # Mangum runs the app on this thread's loop
        try:
            outcome["result"] = create(title, key=key)
        finally:
            loop.close()

    try:
        with engine_a.connect() as connection_a:
            connection_a.begin()
            created_a = notes.create_note(
                Session(connection_a), title=title, body="", ttl_seconds=None, idempotency_key=key
            )
            thread = threading.Thread(target=request_b)
            thread.start()
            _wait_for_lock_waiter(engine_a)  # the handler's one pooled connection is busy waiting
            connection_a.commit()
            thread.join(timeout=30)
    finally:
        engine_a.dispose()
    status, headers, body = outcome["result"]
    assert status == 201
    assert headers["idempotent-replayed"] == "true"
    assert body["id"] == str(created_a.note.id)
    assert len(sql("SELECT id FROM notes WHERE title = :title", title=title)) == 1


def _wait_for_lock_waiter(engine: Engine) -> None:
    query = text("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO notes%'")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if connection.execute(query).first():
                return
        time.sleep(0.02)
    raise AssertionError("the second request never waited on the first one's uncommitted key")


@pytest.mark.usefixtures("serverless")
def test_pages_walk_newest_first_without_duplicates_or_gaps() -> None:
    prefix = unique("page")
    created = [create(f"{prefix} #{i}")[2]["id"] for i in range(7)]
    # Three notes in one transaction share created_at: the id breaks the tie.
    same_instant = run_in_session(
        lambda session: [
            str(
                notes.create_note(
                    session, title=f"{prefix} same {i}", body="", ttl_seconds=None, idempotency_key=None
                ).note.id
            )
            for i in range(3)
        ]
    )
    mine = set(created) | set(same_instant)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while mine - {note["id"] for note in seen}:
        params = {"limit": "3"} if cursor is None else {"limit": "3", "cursor": cursor}
        status, _, page = invoke(with_query(load_event("api-07-list-notes"), **params))
        assert status == 200
        assert len(page["items"]) <= 3
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        assert cursor is not None or not (mine - {note["id"] for note in seen}), "ran out of pages before my notes"
    ids = [note["id"] for note in seen]
    assert len(ids) == len(set(ids)), "a note appeared on two pages"
    keys = [(note["created_at"], note["id"]) for note in seen]
    assert keys == sorted(keys, reverse=True), "not newest first"
    mine_in_order = [i for i in ids if i in mine]
    assert mine_in_order[-7:] == list(reversed(created))  # created one by one: strictly newer each time
    assert set(mine_in_order[:3]) == set(same_instant)


@pytest.mark.usefixtures("serverless")
def test_expired_notes_are_hidden_from_get_list_and_delete() -> None:
    title = unique("expired")
    [row] = sql(
        "INSERT INTO notes (title, expires_at) VALUES (:title, now() - interval '1 second') RETURNING id", title=title
    )
    expired_id = str(row.id)
    _, _, live = create(unique("live"), ttl_seconds=3600)

    status, _, _ = invoke(with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", expired_id))
    assert status == 404
    status, _, _ = invoke(with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", expired_id))
    assert status == 404
    status, _, page = invoke(with_query(load_event("api-07-list-notes"), limit="100"))
    ids = {note["id"] for note in page["items"]}
    assert live["id"] in ids
    assert expired_id not in ids
    # Hidden, not deleted: removing rows is the purge's job.
    assert len(sql("SELECT id FROM notes WHERE id = :id", id=row.id)) == 1


@pytest.fixture
def statements(serverless: None) -> Iterator[list[str]]:
    """SQL statements the handler's engine executes (BEGIN/COMMIT are not statements here)."""
    executed: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        executed.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    yield executed
    event.remove(engine, "before_cursor_execute", record)


def test_each_route_runs_one_statement_and_invalid_requests_none(statements: list[str]) -> None:
    # Round trips per request are this template's main performance figure: one statement per request.
    key, title = unique("one-statement"), unique("one statement")
    _, _, note = create(title, key=key)

    def create_event(body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        event = with_json_body(load_event("api-02-create-note"), body)
        return with_header(event, "Idempotency-Key", idempotency_key) if idempotency_key else event

    cases = [
        ("create", 201, create_event({"title": unique("one")})),
        ("replay", 201, create_event({"title": title}, key)),
        ("conflict", 409, create_event({"title": "x"}, key)),
        ("list", 200, load_event("api-07-list-notes")),
        ("get", 200, with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", note["id"])),
        ("delete", 204, with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", note["id"])),
        ("get unknown", 404, load_event("api-10-get-note-unknown-id")),
    ]  # fmt: skip
    for case, expected_status, request in cases:
        statements.clear()
        status, _, _ = invoke(request)
        assert status == expected_status, case
        assert len(statements) == 1, (case, statements)
    for name in (
        "api-08-list-notes-bad-cursor",
        "api-13-create-note-invalid-fields",
        "api-15-create-note-wrong-content-type",
    ):
        statements.clear()
        invoke(load_event(name))
        assert statements == [], name


@pytest.mark.parametrize("name", ["api-01-health", "api-07-list-notes", "api-02-create-note"])
def test_unreachable_database_answers_503_with_retry_after(
    monkeypatch: pytest.MonkeyPatch, database: DatabaseTarget, name: str
) -> None:
    # A pooler address where nothing listens: connect attempts are refused until the deadline runs out.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    live_port = urlsplit(database.pooled_url).port
    configure_serverless(
        monkeypatch,
        pooled_url=database.pooled_url.replace(f":{live_port}/", f":{dead_port}/"),
        pooler_hosts=pooler_entry(database.pooled_url, dead_port),
    )
    try:
        response = handler(load_event(name), FakeLambdaContext(timeout_ms=3_000))
    finally:
        reset_database_state()
    body = json.loads(response["body"])
    assert response["statusCode"] == 503
    assert int(response["headers"]["retry-after"]) >= 1
    assert body["error"]["code"] == "database_unavailable"
    assert str(dead_port) not in response["body"]
