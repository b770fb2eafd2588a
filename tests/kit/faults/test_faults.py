"""With requests flowing, inject one fault at a time: no hang, clean 503s, recovery, no lost or doubled write."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pg8000.dbapi
import pytest
from sqlalchemy import Engine, text

from devtools import stack
from devtools.proxy import Proxy
from devtools.testing import figures
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import configure_serverless, reset_database_state
from devtools.testing.logs import JsonLines, captured_logs
from devtools.testing.secrets import assert_no_secret
from devtools.testing.urls import connect_address, pooler_entry, with_port
from lib.dbkit import pg_pipeline
from lib.dbkit.settings import Settings
from tests.kit.faults.traffic import Client, Outcome, rows_by_key, run_with_fault

_TERMINATE_OTHERS = text(
    """
    SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
    """
)


@dataclass(frozen=True)
class PoolTotals:
    """Pool summary counters added up over a scenario's invocations."""

    invocations: int
    connections_opened: int
    invalidations: int
    connect_retries: int
    dead_connection_reruns: int
    connect_attempts_failed: int


@dataclass(frozen=True)
class Result:
    client: Client
    totals: PoolTotals
    recovery: list[Outcome]


@pytest.fixture
def proxy(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch, schema: None) -> Iterator[Proxy]:
    """The app's DATABASE_URL points at a fault-injecting proxy in front of PgBouncer."""
    if not database.local_stack:
        pytest.skip("the proxy keeps the URL's host name for TLS, so it needs the embedded stack on localhost")
    host, port = connect_address(database.pooled_url)
    with Proxy("127.0.0.1" if host == "localhost" else host, port) as running:
        configure_serverless(
            monkeypatch,
            pooled_url=with_port(database.pooled_url, running.port),
            pooler_hosts=pooler_entry(database.pooled_url, running.port),
        )
        yield running
        reset_database_state()


@pytest.fixture
def pooled_app(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch, schema: None) -> Iterator[None]:
    """The app straight on PgBouncer, for faults made by restarting real servers."""
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    yield
    reset_database_state()


def _totals(logs: JsonLines) -> PoolTotals:
    summaries = [line["pool_summary"] for line in logs.with_key("pool_summary")]
    messages = [line.get("message") for line in logs.records]
    reruns = [line for line in logs.records if line.get("message") == "transaction failed on a dead connection"]
    return PoolTotals(
        invocations=len(summaries),
        connections_opened=sum(s["connections_opened"] for s in summaries),
        invalidations=sum(s["invalidations"] for s in summaries),
        connect_retries=sum(s["connect_retries"] for s in summaries),
        dead_connection_reruns=sum(1 for line in reruns if line.get("retrying")),
        connect_attempts_failed=messages.count("database connect attempt failed"),
    )


def exercise(name: str, fault: Callable[[], None], database: DatabaseTarget, direct: Engine) -> Result:
    """Warm up, run the fault with requests flowing, then check recovery, the database, the logs and the figures."""
    client = Client(label=f"fault {name} {uuid.uuid4().hex[:8]}")
    with captured_logs() as logs:
        client.step(give_up_at=time.monotonic() + 5)  # the environment holds a pooled connection before the fault
        run_with_fault(client, fault)
        first_after = len(client.outcomes)
        client.health()
        client.step(give_up_at=time.monotonic())  # no client retry allowed: it must work at once
    recovery = client.outcomes[first_after:]
    totals = _totals(logs)
    statuses = client.statuses()

    assert client.problems == []
    assert [outcome.status for outcome in recovery] == [200, 201, 200], "the first invocations after the fault failed"

    stored = rows_by_key(direct, client.attempted)
    for key, (title, note_id) in client.acknowledged.items():
        assert stored[key] == [(title, note_id)], f"acknowledged write {key} is missing or doubled: {stored[key]}"
    assert all(len(rows) <= 1 for rows in stored.values()), "an idempotent retry created a duplicate"

    # Every invocation logged its pool summary, which agrees with the pool events logged one by one; every 503 was
    # logged with its reason.
    assert totals.invocations == len(client.outcomes)
    events = [line["pool_event"] for line in logs.with_key("pool_event")]
    assert events.count("invalidate") + events.count("soft_invalidate") == totals.invalidations
    assert events.count("connect") == totals.connections_opened
    unavailable = [line for line in logs.records if line.get("message") == "database unavailable"]
    assert len(unavailable) == statuses.get(503, 0)
    assert_no_secret(
        database.password, *(outcome.raw for outcome in client.outcomes), *(o.headers for o in client.outcomes)
    )

    max_s = client.max_elapsed()
    figures.record(
        "fault scenarios",
        f"{name}: {len(client.outcomes)} invocations ({_format(statuses)}), {len(client.acknowledged)} writes "
        f"acknowledged and stored once, {client.client_retries} client retries, {totals.dead_connection_reruns} "
        f"dead-connection re-runs, {totals.connect_retries} connect retries, {totals.invalidations} invalidations, "
        f"max {max_s:.2f}s of a {client.timeout_ms / 1000:g}s deadline",
    )
    return Result(client, totals, recovery)


def wait_until_the_pooler_serves(database: DatabaseTarget, budget_s: float = 40.0) -> float:
    """Seconds until a fresh client gets an answer through the pooler (the fault has cleared), probing every 0.2 s.

    After Postgres comes back, PgBouncer may keep refusing for up to server_login_retry (15 s by default) when a
    server login failed while Postgres was down.
    """
    settings = Settings.from_env(
        {"DATABASE_URL": database.pooled_url, "DB_MODE": "serverless", "DB_POOLER_HOSTS": database.pooler_hosts}
    )
    started = time.monotonic()
    while True:
        try:
            connection = pg_pipeline.connect(**settings.database.connect_args(timeout=5))
            try:
                cursor = connection.cursor()
                cursor.execute("select 1")
                cursor.fetchall()
                return time.monotonic() - started
            finally:
                connection.close()
        except (OSError, pg8000.dbapi.Error):
            if time.monotonic() - started > budget_s:
                raise
            time.sleep(0.2)


def _format(statuses: dict[int, int]) -> str:
    return ", ".join(f"{count}x{status}" for status, count in sorted(statuses.items()))


def test_dropped_connections(proxy: Proxy, database: DatabaseTarget, direct: Engine) -> None:
    dropped: list[int] = []

    def fault() -> None:
        for _ in range(8):
            time.sleep(0.3)
            dropped.append(proxy.drop_connections())

    result = exercise("connections dropped (RST) 8 times", fault, database, direct)
    assert sum(dropped) > 0
    assert result.totals.invalidations >= 1


def test_refused_while_the_compute_wakes(proxy: Proxy, database: DatabaseTarget, direct: Engine) -> None:
    def fault() -> None:
        proxy.refuse_for(3.0)
        proxy.drop_connections()
        time.sleep(3.0)

    result = exercise("connections refused for 3 s (compute waking)", fault, database, direct)
    assert proxy.stats.refused > 0
    assert result.totals.connect_retries >= 1
    assert result.totals.connect_attempts_failed >= 1


def test_added_latency(proxy: Proxy, database: DatabaseTarget, direct: Engine) -> None:
    def fault() -> None:
        proxy.delay_ms = 100
        proxy.drop_connections()  # the next connection pays the latency on its handshake too
        time.sleep(3.0)
        proxy.delay_ms = 0

    result = exercise("100 ms one-way latency for 3 s", fault, database, direct)
    assert result.client.statuses().get(503, 0) == 0, "latency well inside the deadline must not fail requests"
    assert result.totals.connections_opened >= 2


def test_stall_mid_response_longer_than_the_deadline(proxy: Proxy, database: DatabaseTarget, direct: Engine) -> None:
    def fault() -> None:
        time.sleep(0.2)
        proxy.stall(12.0)
        time.sleep(12.0)

    result = exercise("responses stalled for 12 s (deadline 10 s)", fault, database, direct)
    assert result.client.statuses().get(503, 0) >= 1
    assert result.totals.invalidations >= 1


def test_blackhole(proxy: Proxy, database: DatabaseTarget, direct: Engine) -> None:
    def fault() -> None:
        time.sleep(0.2)
        proxy.blackhole = True
        time.sleep(3.0)
        proxy.blackhole = False

    result = exercise("blackhole for 3 s", fault, database, direct)
    assert result.client.statuses().get(503, 0) >= 1
    assert result.totals.invalidations >= 1


@pytest.mark.local_stack
def test_pgbouncer_restart(pooled_app: None, database: DatabaseTarget, direct: Engine) -> None:
    def fault() -> None:
        time.sleep(0.3)
        stack.restart_pgbouncer()
        wait_until_the_pooler_serves(database)

    result = exercise("PgBouncer restarted", fault, database, direct)
    assert result.totals.invalidations >= 1


@pytest.mark.local_stack
def test_postgres_restart(pooled_app: None, database: DatabaseTarget, direct: Engine) -> None:
    refused_for: list[float] = []

    def fault() -> None:
        time.sleep(0.3)
        stack.restart_postgres()
        refused_for.append(wait_until_the_pooler_serves(database))

    exercise("Postgres restarted (fast shutdown)", fault, database, direct)
    figures.record(
        "fault scenarios",
        f"  after the Postgres restart the pooler itself served again after {refused_for[0]:.1f}s "
        "(PgBouncer's server_login_retry)",
    )


@pytest.mark.local_stack
def test_every_backend_terminated(pooled_app: None, database: DatabaseTarget, direct: Engine) -> None:
    terminated: list[int] = []

    def fault() -> None:
        for _ in range(5):
            time.sleep(0.4)
            with direct.begin() as connection:
                killed = connection.execute(_TERMINATE_OTHERS).scalar_one()
            terminated.append(int(killed))
        wait_until_the_pooler_serves(database)

    exercise("pg_terminate_backend on every backend, 5 times", fault, database, direct)
    assert sum(terminated) > 0
