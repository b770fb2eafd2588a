"""Hundreds of simulated execution environments, each with its own engine, through the pooler (max_connections=20).

Each environment runs the app from Mangum down (lib.dbkit.invocation.lambda_entry around handlers.api's adapter) one
request at a time, like a Lambda execution environment. Threads stand in for environments; the Powertools
logger/metrics decorators are left out because they are process-wide state that real environments do not share.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devtools.events import load_event, with_header, with_json_body, with_path_parameter, with_query
from devtools.testing import figures
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.logs import captured_logs
from devtools.testing.secrets import assert_no_secret
from handlers.api import adapter
from lib.dbkit import engine as db
from lib.dbkit import observability, pool_events
from lib.dbkit.engine import build_engine
from lib.dbkit.invocation import lambda_entry
from lib.dbkit.settings import Settings

WORKERS = 50
TIMEOUT_MS = 10_000
WRITES_PER_ENVIRONMENT = 3
# Bounded in time as well as count: the run stops by itself and the test fails if environments were left out.
BUDGET_S = 240.0


class _SerialMetrics:
    """One lock around the process-wide Powertools metrics object, which is not safe to share between threads."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def add_metric(self, **kwargs: Any) -> None:
        with self._lock:
            self._inner.add_metric(**kwargs)


@dataclass
class _Environment:
    number: int
    holder: db.EngineHolder = field(default_factory=db.EngineHolder)
    statuses: list[int] = field(default_factory=list)
    # (Idempotency-Key, title, note id) of each write answered 201.
    acknowledged: list[tuple[str, str, str]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    finished: bool = False


_invoke = lambda_entry(adapter)
_loops: list[asyncio.AbstractEventLoop] = []


def _give_thread_an_event_loop() -> None:
    # Mangum runs the app on the thread's current event loop; it creates one only for the thread that built it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _loops.append(loop)


def _call(env: _Environment, event: dict[str, Any]) -> tuple[int, Any, str]:
    started = time.monotonic()
    response = _invoke(event, FakeLambdaContext(timeout_ms=TIMEOUT_MS))
    env.elapsed.append(time.monotonic() - started)
    env.statuses.append(response["statusCode"])
    raw = response.get("body") or ""
    return response["statusCode"], json.loads(raw) if raw else None, raw


def _live(env: _Environment, label: str, stop_at: float) -> None:
    """One environment's life, on its own engine: a few writes, each read back by id, then one page of the list."""
    with db.execution_environment(env.holder):
        _requests(env, label, stop_at)


def _requests(env: _Environment, label: str, stop_at: float) -> None:
    for _ in range(WRITES_PER_ENVIRONMENT):
        if time.monotonic() > stop_at:
            return
        key = str(uuid.uuid4())
        title = f"{label} env {env.number} {key[:8]}"
        body = f"written by environment {env.number}"
        event = with_json_body(load_event("api-02-create-note"), {"title": title, "body": body})
        status, note, raw = _call(env, with_header(event, "Idempotency-Key", key))
        if status != 201:
            env.errors.append(f"create {status}: {raw[:200]}")
            continue
        if note["title"] != title:
            env.wrong.append(f"create answered {note['title']!r} for {title!r}")
        env.acknowledged.append((key, title, note["id"]))
        status, read, raw = _call(env, with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", note["id"]))
        if status != 200:
            env.errors.append(f"get {status}: {raw[:200]}")
        elif (read["id"], read["title"], read["body"]) != (note["id"], title, body):
            env.wrong.append(f"get {note['id']} returned {read['id']} {read['title']!r}")
    status, page, raw = _call(env, with_query(load_event("api-07-list-notes"), limit="5"))
    if status != 200 or not isinstance(page.get("items"), list) or len(page["items"]) > 5:
        env.errors.append(f"list {status}: {raw[:200]}")
    env.finished = True


def _peak_backends(direct: Engine, stop: threading.Event, peak: list[int]) -> None:
    with direct.connect() as connection:
        while not stop.wait(0.05):
            count = connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
            )
            peak.append(int(count.scalar_one()))
            connection.rollback()


@pytest.fixture
def serial_metrics(monkeypatch: pytest.MonkeyPatch, schema: None) -> None:
    monkeypatch.setattr(pool_events, "metrics", _SerialMetrics(observability.metrics))


@pytest.mark.parametrize(
    ("pool", "count"),
    [("pooled", 300), ("single server pool", 80)],
    ids=["pooled-300", "single-server-pool-80"],
)
def test_environments_through_the_pooler(
    pool: str,
    count: int,
    database: DatabaseTarget,
    serial_metrics: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = database.pooled_url if pool == "pooled" else database.single_pool_url
    assert url is not None, "the single-server pool URL is needed (the embedded stack provides it)"
    configure_serverless(monkeypatch, pooled_url=url, pooler_hosts=database.pooler_hosts)
    label = f"load {uuid.uuid4().hex[:8]}"
    envs = [_Environment(number) for number in range(count)]
    direct = build_engine(Settings.from_env({"DATABASE_URL": database.direct_url, "DB_MODE": "server"}))
    stop_sampling = threading.Event()
    peak: list[int] = [0]
    sampler = threading.Thread(target=_peak_backends, args=(direct, stop_sampling, peak), daemon=True)
    started = time.monotonic()
    stop_at = started + BUDGET_S
    try:
        sampler.start()
        with (
            captured_logs() as logs,
            ThreadPoolExecutor(
                WORKERS, thread_name_prefix="environment", initializer=_give_thread_an_event_loop
            ) as pool_threads,
        ):
            for future in [pool_threads.submit(_live, env, label, stop_at) for env in envs]:
                future.result()
        duration = time.monotonic() - started
        stop_sampling.set()
        sampler.join(5)

        acknowledged = [write for env in envs for write in env.acknowledged]
        with direct.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT k.key, n.title, n.id::text FROM notes n LEFT JOIN idempotency_keys k ON k.note_id = n.id "
                    "WHERE n.title LIKE :label"
                ),
                {"label": f"{label} %"},
            ).all()
    finally:
        stop_sampling.set()
        while _loops:
            _loops.pop().close()
        for env in envs:
            env.holder.dispose()
        with direct.begin() as connection:
            connection.execute(text("DELETE FROM notes WHERE title LIKE :label"), {"label": f"{label} %"})
        direct.dispose()
        reset_database_state()

    requests = sum(len(env.statuses) for env in envs)
    errors = [error for env in envs for error in env.errors]
    wrong = [problem for env in envs for problem in env.wrong]
    assert all(env.finished for env in envs), "the run hit its time budget before every environment finished"
    assert errors == []
    assert wrong == []
    assert requests == count * (2 * WRITES_PER_ENVIRONMENT + 1)
    assert len(acknowledged) == count * WRITES_PER_ENVIRONMENT
    assert sorted(tuple(row) for row in rows) == sorted(acknowledged), "acknowledged writes missing or doubled"
    assert max(peak) <= 20
    summaries = logs.with_key("pool_summary")
    assert len(summaries) == requests
    opened = sum(line["pool_summary"]["connections_opened"] for line in summaries)
    assert opened >= count  # each environment opened its own connection
    assert_no_secret(database.password, *logs.lines)
    elapsed = [value for env in envs for value in env.elapsed]
    figures.record(
        "load",
        f"{pool}: {count} environments ({WORKERS} at a time), {requests} requests, {len(errors)} errors, "
        f"{len(wrong)} wrong results, {len(acknowledged)} acknowledged writes all stored once, {opened} connections "
        f"opened, peak {max(peak)} Postgres client backends (max_connections=20), slowest request "
        f"{max(elapsed):.2f}s, {duration:.1f}s in all",
    )
