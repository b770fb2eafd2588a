"""handlers.scheduled.handler against the local stack: what the purge deletes, keeps, skips, and logs."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, text

from devtools.app_config import load_app_config
from devtools.events import event_names, load_event
from devtools.proxy import Proxy
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.logs import captured_logs
from devtools.testing.urls import connect_address, pooler_entry, with_port
from handlers.scheduled import handler
from lib.dbkit.engine import EngineHolder, execution_environment, run_in_transaction
from lib.dbkit.errors import InvalidEventError

import lib.sample_app.purge

JOB = lib.sample_app.purge.JOB_NAME
# What each sample event does: app.toml's [events] (returns, or raises an error type).
EXPECTED_OUTCOME = {
    name: expected for name, expected in load_app_config().events.items() if name.startswith("scheduled-")
}


@pytest.fixture
def serverless(monkeypatch: pytest.MonkeyPatch, database: DatabaseTarget, schema: None) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    _lapse_lease()  # a run killed mid-test elsewhere must not make these tests skip
    yield
    reset_database_state()


def purge_context(timeout_ms: int = 120_000) -> FakeLambdaContext:
    return FakeLambdaContext(function_name="PurgeFunction", timeout_ms=timeout_ms)


def sql(statement: str, **params: Any) -> list[Any]:
    return run_in_transaction(lambda connection: list(connection.execute(text(statement), params).all()))


def execute(statement: str, **params: Any) -> None:
    run_in_transaction(lambda connection: connection.execute(text(statement), params))


def insert_notes(count: int, *, expired: bool) -> list[uuid.UUID]:
    """Notes with unique titles, already expired (a minute ago) or expiring in an hour."""
    offset = "- interval '1 minute'" if expired else "+ interval '1 hour'"
    rows = sql(
        f"INSERT INTO notes (title, expires_at) SELECT :prefix || n, now() {offset} "
        "FROM generate_series(1, :count) AS n RETURNING id",
        prefix=f"purge-test {uuid.uuid4().hex[:12]} #",
        count=count,
    )
    return [row.id for row in rows]


def existing(ids: list[uuid.UUID]) -> set[uuid.UUID]:
    return {row.id for row in sql("SELECT id FROM notes WHERE id = ANY(:ids)", ids=ids)}


def _lapse_lease() -> None:
    execute("UPDATE job_leases SET locked_until = now() WHERE name = :name", name=lib.sample_app.purge.JOB_NAME)


@pytest.mark.usefixtures("serverless")
def test_every_sample_scheduled_event_has_the_documented_outcome() -> None:
    assert set(EXPECTED_OUTCOME) == set(event_names("scheduled-")), "add the new event's outcome to app.toml [events]"
    for name in event_names("scheduled-"):
        expected = EXPECTED_OUTCOME[name]
        if expected.raises is None:
            summary = handler(load_event(name), purge_context())
            assert summary["skipped"] is False, name
        else:
            with pytest.raises(Exception) as raised:  # noqa: PT011 - the type is app.toml's, checked by name
                handler(load_event(name), purge_context())
            assert type(raised.value).__name__ == expected.raises, name


@pytest.mark.usefixtures("serverless")
def test_purge_deletes_expired_notes_and_keeps_the_others() -> None:
    expired, live = insert_notes(5, expired=True), insert_notes(3, expired=False)
    summary = handler(load_event("scheduled-01-purge"), purge_context())
    assert existing(expired) == set()
    assert existing(live) == set(live)
    assert summary["purged"] >= len(expired)  # other tests' expired notes may go too
    assert summary["skipped"] is False
    assert summary["stopped_early"] is False


@pytest.mark.usefixtures("serverless")
def test_purge_works_in_bounded_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lib.sample_app.purge, "BATCH_SIZE", 2)
    expired = insert_notes(5, expired=True)
    summary = handler(load_event("scheduled-01-purge"), purge_context())
    assert existing(expired) == set()
    # 5 rows at 2 per batch: at least 3 batches, and a short batch ends the run.
    assert summary["batches"] >= 3
    assert summary["batches"] >= summary["purged"] / 2


@pytest.mark.usefixtures("serverless")
def test_purge_logs_one_summary_line_with_the_eventbridge_id_as_correlation_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = load_event("scheduled-01-purge")
    event["id"] = str(uuid.uuid4())
    with captured_logs() as logs:
        summary = handler(event, purge_context())
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    purge_metrics = [m for m in emf if "NotesPurged" in m]
    assert len(purge_metrics) == 1
    assert purge_metrics[0]["NotesPurged"] == [float(summary["purged"])]
    assert purge_metrics[0]["PurgeSkipped"] == [0.0]
    lines = [record for record in logs.records if record["message"] == "purge finished"]
    assert len(lines) == 1
    assert lines[0]["correlation_id"] == event["id"]
    assert lines[0]["purge"] == summary
    assert set(summary) == {"purged", "keys_purged", "batches", "skipped", "stopped_early", "duration_ms"}


@pytest.mark.usefixtures("serverless")
def test_purge_stops_before_starting_a_batch_when_little_time_is_left() -> None:
    expired = insert_notes(2, expired=True)
    summary = handler(load_event("scheduled-01-purge"), purge_context(timeout_ms=3_000))
    assert summary["stopped_early"] is True
    assert summary["batches"] == 0
    assert existing(expired) == set(expired)
    # It gave the lease back: the next run (with time) purges.
    assert handler(load_event("scheduled-01-purge"), purge_context())["skipped"] is False
    assert existing(expired) == set()


@pytest.mark.usefixtures("serverless")
def test_two_overlapping_runs_one_purges_and_the_other_reports_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lib.sample_app.purge, "BATCH_SIZE", 2)
    expired = insert_notes(5, expired=True)
    first_run_holds_lease = threading.Event()
    second_run_done = threading.Event()
    original_batch = lib.sample_app.purge.purge_batch
    calls: list[str] = []

    def second_batch_after_the_second_run(connection: Connection, **kwargs: Any) -> Any:
        # The first run's first (full) batch took the lease; its second waits, holding the lease, for the other run.
        calls.append(kwargs["holder"])
        if len(calls) == 2:
            first_run_holds_lease.set()
            assert second_run_done.wait(timeout=30)
        return original_batch(connection, **kwargs)

    monkeypatch.setattr(lib.sample_app.purge, "purge_batch", second_batch_after_the_second_run)
    outcome: dict[str, Any] = {}
    first = threading.Thread(
        target=lambda: outcome.update(first=handler(load_event("scheduled-01-purge"), purge_context()))
    )
    first.start()
    try:
        assert first_run_holds_lease.wait(timeout=30)
        monkeypatch.setattr(lib.sample_app.purge, "purge_batch", original_batch)
        # Another execution environment, as a second scheduled run in Lambda would be: its own engine and pool.
        with execution_environment(EngineHolder()) as other:
            try:
                left = existing(expired)
                second = handler(load_event("scheduled-01-purge"), purge_context())
                assert existing(expired) == left, "the skipped run must not delete anything"
            finally:
                other.dispose()
    finally:
        second_run_done.set()
        first.join(timeout=60)
    assert left
    assert second["skipped"] is True
    assert (second["purged"], second["batches"]) == (0, 0)
    assert outcome["first"]["skipped"] is False
    assert outcome["first"]["batches"] >= 3
    assert existing(expired) == set()


@pytest.mark.usefixtures("serverless")
def test_a_crashed_runs_lease_blocks_only_until_it_lapses() -> None:
    expired = insert_notes(1, expired=True)
    execute(
        "INSERT INTO job_leases (name, holder, locked_until) VALUES (:name, 'crashed-run', now() + interval '1 hour') "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, locked_until = excluded.locked_until",
        name=lib.sample_app.purge.JOB_NAME,
    )
    try:
        assert handler(load_event("scheduled-01-purge"), purge_context())["skipped"] is True
        assert existing(expired) == set(expired)
    finally:
        _lapse_lease()
    assert handler(load_event("scheduled-01-purge"), purge_context())["skipped"] is False
    assert existing(expired) == set()


@pytest.mark.usefixtures("serverless")
def test_a_wrong_event_fails_clearly_and_deletes_nothing() -> None:
    expired = insert_notes(1, expired=True)
    with pytest.raises(InvalidEventError, match="expected an EventBridge Scheduled Event"):
        handler(load_event("scheduled-02-wrong-event-type"), purge_context())
    assert existing(expired) == set(expired)
    leases = sql(
        "SELECT locked_until <= now() AS free FROM job_leases WHERE name = :name", name=lib.sample_app.purge.JOB_NAME
    )
    assert all(lease.free for lease in leases), "a refused event must not take the lease"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, database: DatabaseTarget, schema: None) -> Iterator[Proxy]:
    """The purge in serverless mode, talking to the pooler through a round-trip-counting proxy."""
    host, port = connect_address(database.pooled_url)
    with Proxy("127.0.0.1" if host == "localhost" else host, port) as proxy:
        url = with_port(database.pooled_url, proxy.port)
        configure_serverless(monkeypatch, pooled_url=url, pooler_hosts=pooler_entry(database.pooled_url, proxy.port))
        _lapse_lease()
        yield proxy
        reset_database_state()


def _purge_flights(proxy: Proxy) -> tuple[int, dict[str, Any]]:
    proxy.reset_stats()
    summary = handler(load_event("scheduled-01-purge"), purge_context())
    return proxy.stats.client_flights, summary


@pytest.mark.pipelined_driver
def test_a_purge_batch_is_one_round_trip_lease_and_release_included(
    counted: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_notes(2, expired=True)
    assert _purge_flights(counted)[0] == 1  # one short batch: lease, delete, release in one statement
    monkeypatch.setattr(lib.sample_app.purge, "BATCH_SIZE", 2)
    insert_notes(5, expired=True)
    flights, summary = _purge_flights(counted)
    assert summary["batches"] >= 3
    assert flights == summary["batches"]
    assert sql("SELECT locked_until <= now() AS free FROM job_leases WHERE name = :name", name=JOB)[0].free


@pytest.mark.pipelined_driver
def test_the_first_run_ever_creates_the_lease_and_releases_it_in_a_second_round_trip(counted: Proxy) -> None:
    execute("DELETE FROM job_leases WHERE name = :name", name=JOB)
    expired = insert_notes(2, expired=True)
    flights, summary = _purge_flights(counted)
    assert (flights, summary["batches"], summary["skipped"]) == (2, 1, False)
    assert existing(expired) == set()
    assert sql("SELECT locked_until <= now() AS free FROM job_leases WHERE name = :name", name=JOB)[0].free
