"""Idempotency-Keys live 24 h on their own: replays outlive the note, conflicts are 409, old keys are forgotten."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devtools.events import load_event, with_header, with_json_body, with_path_parameter
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.processes import fire_together
from handlers.api import handler

from lib.sample_app.notes import IDEMPOTENCY_WINDOW_SECONDS
from lib.sample_app.purge import purge_expired

# Every test reads or writes the notes tables (the `direct` engine included).
pytestmark = pytest.mark.usefixtures("schema")
PROCESSES = 16
# The API function's handler as template.yaml names it: each process imports it as a new execution environment.
HANDLER = "handlers.api.handler"


@pytest.fixture
def serverless(monkeypatch: pytest.MonkeyPatch, database: DatabaseTarget, schema: None) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    yield
    reset_database_state()


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = handler(event, FakeLambdaContext())
    return response["statusCode"], response["headers"], json.loads(response["body"]) if response["body"] else None


def create_event(key: str, **payload: Any) -> dict[str, Any]:
    return with_header(with_json_body(load_event("api-02-create-note"), payload), "Idempotency-Key", key)


def sql(direct: Engine, statement: str, **params: Any) -> list[Any]:
    with direct.begin() as connection:
        result = connection.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []


def titled(direct: Engine, title: str) -> list[str]:
    return [str(row.id) for row in sql(direct, "SELECT id FROM notes WHERE title LIKE :t", t=f"{title}%")]


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


def assert_replays(original: tuple[int, dict[str, str], Any], replay: tuple[int, dict[str, str], Any]) -> None:
    assert (replay[0], replay[2]) == (original[0], original[2])
    assert replay[1]["location"] == original[1]["location"]
    assert replay[1]["idempotent-replayed"] == "true"


@pytest.mark.usefixtures("serverless")
def test_a_replay_after_delete_returns_the_original_answer_and_creates_nothing(direct: Engine) -> None:
    key, title = unique("key"), unique("deleted")
    original = invoke(create_event(key, title=title, body="b"))
    assert original[0] == 201
    assert invoke(with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", original[2]["id"]))[0] == 204
    assert_replays(original, invoke(create_event(key, title=title, body="b")))
    assert titled(direct, title) == []


@pytest.mark.usefixtures("serverless")
def test_a_replay_after_the_note_expired_and_was_purged_returns_the_original_answer(direct: Engine) -> None:
    key, title = unique("key"), unique("expired")
    original = invoke(create_event(key, title=title, ttl_seconds=60))
    sql(direct, "UPDATE notes SET expires_at = now() - interval '1 second' WHERE title = :t", t=title)
    assert_replays(original, invoke(create_event(key, title=title, ttl_seconds=60)))
    purge_expired()
    assert titled(direct, title) == []
    assert_replays(original, invoke(create_event(key, title=title, ttl_seconds=60)))
    assert titled(direct, title) == []


@pytest.mark.usefixtures("serverless")
def test_a_different_body_with_a_kept_key_is_409_even_after_the_note_is_gone(direct: Engine) -> None:
    key, title = unique("key"), unique("conflict")
    created = invoke(create_event(key, title=title))[2]
    invoke(with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", created["id"]))
    status, _, body = invoke(create_event(key, title=f"{title} changed"))
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    assert titled(direct, title) == []


@pytest.mark.usefixtures("serverless")
def test_after_the_window_the_key_is_forgotten(direct: Engine) -> None:
    key, title = unique("key"), unique("window")
    first = invoke(create_event(key, title=title))
    sql(direct, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = :k", k=key)
    status, headers, second = invoke(create_event(key, title=f"{title} again"))  # not a conflict any more
    assert status == 201
    assert "idempotent-replayed" not in headers
    assert second["id"] != first[2]["id"]
    assert sorted(titled(direct, title)) == sorted([first[2]["id"], second["id"]])
    assert_replays((status, headers, second), invoke(create_event(key, title=f"{title} again")))


@pytest.mark.usefixtures("serverless")
def test_the_purge_removes_expired_keys_and_keeps_live_ones(direct: Engine) -> None:
    old, live = unique("old-key"), unique("live-key")
    invoke(create_event(old, title=unique("old")))
    invoke(create_event(live, title=unique("live")))
    sql(direct, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = :k", k=old)
    summary = purge_expired()
    assert summary.keys_purged >= 1
    kept = {row.key for row in sql(direct, "SELECT key FROM idempotency_keys WHERE key IN (:a, :b)", a=old, b=live)}
    assert kept == {live}


@pytest.mark.usefixtures("serverless")
def test_the_key_and_the_note_are_written_by_one_statement(direct: Engine) -> None:
    key, title = unique("key"), unique("together")
    created = invoke(create_event(key, title=title, body="b", ttl_seconds=600))[2]
    [row] = sql(
        direct,
        "SELECT k.note_id, k.title, k.body, k.note_created_at = n.created_at AS same_time, "
        "k.expires_at - k.note_created_at AS window FROM idempotency_keys k JOIN notes n ON n.id = k.note_id "
        "WHERE k.key = :k",
        k=key,
    )
    assert (str(row.note_id), row.title, row.body, row.same_time) == (created["id"], title, "b", True)
    assert row.window.total_seconds() == IDEMPOTENCY_WINDOW_SECONDS


def _environ(database: DatabaseTarget) -> dict[str, str]:
    return {"DATABASE_URL": database.pooled_url, "DB_MODE": "serverless", "DB_POOLER_HOSTS": database.pooler_hosts}


def test_16_processes_same_key_same_body_store_one_note_and_all_get_it(
    database: DatabaseTarget, direct: Engine
) -> None:
    key, title = unique("race-key"), unique("race same")
    answers = fire_together(
        _environ(database),
        [create_event(key, title=title, body="b")] * PROCESSES,
        handler=HANDLER,
        warm_up=load_event("api-01-health"),
    )
    assert [status for status, _, _ in answers] == [201] * PROCESSES
    ids = {body["id"] for _, _, body in answers}
    assert len(ids) == 1
    assert titled(direct, title) == list(ids)
    assert sum(1 for _, headers, _ in answers if "idempotent-replayed" not in headers) == 1


def test_16_processes_same_key_different_bodies_one_201_the_rest_409(database: DatabaseTarget, direct: Engine) -> None:
    key, title = unique("race-key"), unique("race different")
    events = [create_event(key, title=f"{title} #{number}") for number in range(PROCESSES)]
    answers = fire_together(_environ(database), events, handler=HANDLER, warm_up=load_event("api-01-health"))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [201] + [409] * (PROCESSES - 1)
    [winner] = [body for status, _, body in answers if status == 201]
    assert titled(direct, title) == [winner["id"]]
    assert all(body["error"]["code"] == "idempotency_conflict" for status, _, body in answers if status == 409)
