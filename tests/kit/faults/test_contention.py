"""A locked table and slow statements, with requests flowing: the server's limits keep the pooler and /health free.

Without server-side limits a write that answered 503 at its deadline left its statement waiting on the server, so
waiting backends piled up until PgBouncer's pool (and then Postgres) was full and even GET /health failed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pg8000.dbapi
import pytest
from sqlalchemy import text

from devtools.events import load_event, with_json_body
from devtools.testing import figures
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from handlers.api import handler
from lib.dbkit import invocation
from lib.dbkit.dsn import parse_database_url
from lib.dbkit.engine import EngineHolder, execution_environment, run_in_transaction
from lib.dbkit.errors import DatabaseTimeoutError

HOLD_S = 20.0
DEADLINE_MS = 3000
WORKERS = 4
SAMPLE_EVERY_S = 0.1
# Backends of this database other than the monitor's: waiting on a lock, or running the test's pg_sleep.
_ACTIVITY = """
    SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'),
           count(*) FILTER (WHERE state = 'active' AND query LIKE '%pg_sleep(%' AND query NOT LIKE '%pg_stat_activity%')
    FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class Call:
    """One request: when it started and ended (monotonic), what it answered."""

    started: float
    ended: float
    status: int
    retry_after: str | None = None


@dataclass
class Timeline:
    """Everything the scenario saw, by kind of request, plus the activity samples of the server."""

    calls: dict[str, list[Call]] = field(default_factory=dict)
    # (time, backends waiting on a lock, backends sleeping, requests in flight)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, call: Call) -> None:
        with self.lock:
            self.calls.setdefault(kind, []).append(call)

    def track(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta


@pytest.fixture
def pooled_app(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch, schema: None) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    yield
    reset_database_state()


def _direct(database: DatabaseTarget) -> Any:
    return pg8000.dbapi.connect(**parse_database_url(database.direct_url).connect_args())


def _invoke(event: dict[str, Any]) -> tuple[int, dict[str, str]]:
    response = handler(event, FakeLambdaContext(timeout_ms=DEADLINE_MS))
    headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    return int(response["statusCode"]), headers


def _health(timeline: Timeline) -> None:
    started = time.monotonic()
    status, headers = _invoke(load_event("api-01-health"))
    timeline.add("health", Call(started, time.monotonic(), status, headers.get("retry-after")))


def _write(timeline: Timeline) -> None:
    event = with_json_body(load_event("api-02-create-note"), {"title": f"contention {uuid.uuid4()}"})
    timeline.track(+1)
    started = time.monotonic()
    try:
        status, headers = _invoke(json.loads(json.dumps(event)))
    finally:
        timeline.track(-1)
    timeline.add("write", Call(started, time.monotonic(), status, headers.get("retry-after")))


def _slow_read(timeline: Timeline) -> None:
    # A test-only unit of work (not a route of the app): a statement far longer than the deadline.
    timeline.track(+1)
    invocation.start(FakeLambdaContext(timeout_ms=DEADLINE_MS))
    started = time.monotonic()
    status = 200
    try:
        run_in_transaction(lambda c: c.execute(text("SELECT pg_sleep(60)")).all(), single_statement=True)
    except DatabaseTimeoutError:
        status = 503
    finally:
        invocation.finish()
        timeline.track(-1)
    timeline.add("slow", Call(started, time.monotonic(), status, "1" if status == 503 else None))


def _loop(stop: threading.Event, action: Callable[[], None], pause_s: float) -> None:
    """One execution environment (own engine, own event loop for Mangum) repeating `action` until stopped."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with execution_environment(EngineHolder()) as environment:
        try:
            while not stop.is_set():
                action()
                time.sleep(pause_s)
        finally:
            environment.dispose()
            loop.close()


def _monitor(stop: threading.Event, database: DatabaseTarget, timeline: Timeline) -> None:
    connection = _direct(database)
    connection.autocommit = True  # the monitor's own statements: plain reads on the direct URL
    try:
        while not stop.is_set():
            cursor = connection.cursor()
            cursor.execute(_ACTIVITY)
            waiting, sleeping = cursor.fetchone()
            timeline.samples.append((time.monotonic(), waiting, sleeping, timeline.in_flight))
            time.sleep(SAMPLE_EVERY_S)
    finally:
        connection.close()


def _run(database: DatabaseTarget, during: Callable[[], None], worker: Callable[[Timeline], None]) -> Timeline:
    """Health checks, WORKERS workers and the monitor run while `during` runs; then a little longer."""
    timeline = Timeline()
    stop = threading.Event()
    threads = [threading.Thread(target=_monitor, args=(stop, database, timeline))]
    threads.append(threading.Thread(target=_loop, args=(stop, lambda: _health(timeline), 0.1)))
    threads += [threading.Thread(target=_loop, args=(stop, lambda: worker(timeline), 0.05)) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    try:
        during()
        time.sleep(2 * DEADLINE_MS / 1000)  # requests after the fault ended
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return timeline


def _hold_lock(database: DatabaseTarget, window: list[float]) -> None:
    locker = _direct(database)
    try:
        cursor = locker.cursor()
        cursor.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
        window.append(time.monotonic())
        time.sleep(HOLD_S)
        # The end of the window is taken before the release: a write may complete the instant the lock goes.
        window.append(time.monotonic())
        locker.rollback()
    finally:
        locker.close()


def _check(timeline: Timeline, kind: str, window: list[float], waiting_column: int) -> str:
    """Assert the scenario's promises for the `kind` requests made while the fault lasted; the timeline's summary."""
    started_at, ended_at = window
    health = timeline.calls["health"]
    during = [call for call in timeline.calls[kind] if call.started >= started_at and call.ended <= ended_at]
    after = [call for call in timeline.calls["write"] if call.started >= ended_at + 0.05]
    # GET /health never touches what the fault holds, so nothing it needs is ever full.
    assert {call.status for call in health} == {200}, [c.status for c in health if c.status != 200]
    assert len(during) >= WORKERS * 3
    assert {call.status for call in during} == {503}
    assert all(call.retry_after is not None and int(call.retry_after) >= 1 for call in during)
    slowest = max(call.ended - call.started for call in during)
    assert slowest < DEADLINE_MS / 1000, "a 503 came after the deadline"
    # The server cancels each statement when its request gives up: never more of them than requests in flight.
    samples = [sample for sample in timeline.samples if started_at <= sample[0] <= ended_at]
    peak = max(sample[waiting_column] for sample in samples)
    assert peak <= WORKERS
    # Recovery is immediate: every write that started after the fault ended succeeded.
    assert after
    assert {call.status for call in after} == {201}
    first_ok = min(call.ended for call in after) - ended_at
    what = "waiting on the lock" if waiting_column == 1 else "running pg_sleep"
    return (
        f"{HOLD_S:g} s, {WORKERS} workers at a {DEADLINE_MS / 1000:g} s deadline: GET /health {len(health)}/"
        f"{len(health)} 200; {len(during)} requests during it, all 503 + Retry-After (slowest {slowest:.2f} s); "
        f"peak {peak} backends {what} (at most {WORKERS} requests in flight); {len(after)} writes after it all "
        f"201, the first {first_ok:.2f} s after the end"
    )


@pytest.mark.usefixtures("pooled_app")
def test_a_locked_table_costs_writes_a_503_and_nothing_else(database: DatabaseTarget) -> None:
    window: list[float] = []
    timeline = _run(database, lambda: _hold_lock(database, window), _write)
    line = _check(timeline, "write", window, waiting_column=1)
    figures.record("contention", f"notes locked ACCESS EXCLUSIVE for {line}")


@pytest.mark.usefixtures("pooled_app")
def test_slow_statements_are_cancelled_by_the_server_at_the_deadline(database: DatabaseTarget) -> None:
    window: list[float] = []

    def slow_period() -> None:
        window.append(time.monotonic())
        time.sleep(HOLD_S)
        window.append(time.monotonic())

    def slow_then_write(timeline: Timeline) -> None:
        if len(window) == 1:
            _slow_read(timeline)
        else:
            _write(timeline)

    timeline = _run(database, slow_period, slow_then_write)
    # Every pg_sleep(60) was cancelled by the server: none still runs once its request ended.
    assert timeline.samples[-1][2] == 0
    line = _check(timeline, "slow", window, waiting_column=2)
    figures.record("contention", f"pg_sleep(60) per request for {line}")
