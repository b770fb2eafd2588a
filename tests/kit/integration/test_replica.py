"""Read-only units on the read replica (the stack's hot standby, through the Neon stand-in), and when they are not.

Which server served a unit is what it says itself: ``pg_is_in_recovery()`` is true on the standby only. Faults are
played on the replica's endpoint alone (the stand-in's ``replica`` compute) or on the standby itself (WAL replay
paused), and every unit must still answer: from the primary, with one log line and a DbReplicaFallback count.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from devtools import stack
from devtools.neon_standin import StandinControl
from devtools.proxy import Proxy
from devtools.testing import figures
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.logs import JsonLines, captured_logs
from devtools.testing.proxied import flights
from devtools.testing.replica import (
    FALLBACK,
    REPLAY_PAUSED,
    configure_replica,
    end_replica_faults,
    replay_paused,
    replica_faults,
    wait_replayed,
)
from devtools.testing.secrets import assert_no_secret
from devtools.testing.urls import connect_address, pooler_entry, with_port
from lib.dbkit import engine as db
from lib.dbkit import invocation
from lib.dbkit.errors import InvalidLsnError
from lib.dbkit.observability import metrics
from lib.dbkit.pg_errors import sqlstate
from lib.dbkit.replica import commit_lsn
from lib.dbkit.session import run_in_session
from lib.dbkit.settings import Settings

WHO = "select pg_is_in_recovery()"


class Base(DeclarativeBase):
    pass


class Probe(Base):
    """A row a test writes on the primary and looks for on the replica."""

    __tablename__ = "replica_probe"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    value: Mapped[str] = mapped_column(String(100))


@dataclass
class Invocation:
    """What one simulated Lambda invocation logged and measured."""

    logs: JsonLines
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def fallbacks(self) -> list[dict[str, Any]]:
        return [line for line in self.logs.records if line.get("message") == FALLBACK]

    def summary(self) -> dict[str, Any]:
        (line,) = self.logs.with_key("pool_summary")
        return line


@contextmanager
def invoked(timeout_ms: int = 10_000) -> Iterator[Invocation]:
    """The block as one Lambda invocation: its deadline bounds the units, its logs and metrics are kept."""
    metrics.clear_metrics()
    with captured_logs() as logs:
        result = Invocation(logs)
        invocation.start(FakeLambdaContext(timeout_ms=timeout_ms))
        try:
            yield result
        finally:
            invocation.finish()
            result.metrics = {name: list(entry["Value"]) for name, entry in metrics.metric_set.items()}
            metrics.clear_metrics()


def on_standby(**flags: Any) -> bool:
    """Run a read-only unit that says where it ran: True on the standby."""
    return bool(
        db.run_in_transaction(lambda c: c.execute(text(WHO)).scalar_one(), read_only=True, **flags),
    )


def _read_probe(probe_id: str, **flags: Any) -> tuple[bool, str | None]:
    """(on the standby?, the probe's value there) in one read-only unit."""

    def work(connection: Connection) -> tuple[bool, str | None]:
        row = connection.execute(
            text(f"{WHO}, (select value from replica_probe where id = :id)"), {"id": probe_id}
        ).one()
        return bool(row[0]), row[1]

    return db.run_in_transaction(work, read_only=True, **flags)


def _write_probe(how: str) -> str:
    """Insert a probe row on the primary in a write unit of kind `how`; its id."""
    probe_id = str(uuid.uuid4())
    insert = text("insert into replica_probe (id, value) values (:id, :value)")
    if how == "single statement":
        db.run_in_transaction(lambda c: c.execute(insert, {"id": probe_id, "value": how}), single_statement=True)
    elif how == "transaction":

        def two_statements(connection: Connection) -> None:
            connection.execute(text("select 1"))
            connection.execute(insert, {"id": probe_id, "value": how})

        db.run_in_transaction(two_statements)
    else:  # an ORM unit: a read, then one add (COMMIT rides with the INSERT on the pipelined driver)

        def add(session: Session) -> None:
            session.execute(text("select 1"))
            session.add(Probe(id=probe_id, value=how))

        run_in_session(add)
    return probe_id


@pytest.fixture(scope="module")
def probe_table(database: DatabaseTarget, standby: Engine) -> None:
    """The probe table on the primary, replayed on the standby before any test reads it."""
    direct = db.build_engine(Settings.from_env({"DATABASE_URL": database.direct_url}))
    try:
        with direct.begin() as connection:
            connection.execute(
                text("create table if not exists replica_probe (id varchar(36) primary key, value text)")
            )
            lsn = connection.execute(text("select pg_current_wal_insert_lsn()::text")).scalar_one()
    finally:
        direct.dispose()
    wait_replayed(standby, lsn)


@pytest.fixture
def replica_app(replica_app: Callable[..., None], probe_table: None) -> Callable[..., None]:
    """The plugin's replica_app, with the probe table there."""
    return replica_app


@pytest.fixture
def paused_replay(replica_app: Callable[..., None], database: DatabaseTarget) -> Iterator[None]:
    """The standby's WAL replay paused for the test (resumed after, whatever happened)."""
    if not database.local_stack:
        pytest.skip("pauses the local stack's standby")
    with replay_paused():
        yield


# --- where units run --------------------------------------------------------------------------------------------


def test_read_only_units_run_on_the_standby_and_the_rest_on_the_primary(replica_app: Callable[..., None]) -> None:
    with invoked() as run:
        assert on_standby(single_statement=True)
        assert on_standby()
        assert run_in_session(lambda s: s.execute(text(WHO)).scalar_one(), read_only=True, single_statement=True)
        assert run_in_session(lambda s: s.execute(text(WHO)).scalar_one(), read_only=True)
        assert not db.run_in_transaction(lambda c: c.execute(text(WHO)).scalar_one(), single_statement=True)
        assert not db.run_in_transaction(lambda c: c.execute(text(WHO)).scalar_one())
        assert not run_in_session(lambda s: s.execute(text(WHO)).scalar_one())
    assert run.fallbacks() == []
    summary = run.summary()
    assert summary["pool_summary"]["replica_reads"] == 4
    assert summary["pool_summary"]["replica_fallbacks"] == 0
    # Each engine has its own pool of one connection; the replica's is counted apart.
    assert summary["pool_summary"]["connections_opened"] == 1
    assert summary["replica_pool_summary"]["connections_opened"] == 1
    assert summary["replica_pool_summary"]["checkouts"] == 4
    assert run.metrics["DbReplicaReads"] == [4.0]
    assert run.metrics["DbReplicaFallback"] == [0.0]
    assert run.metrics["DbReplicaConnectionsOpened"] == [1.0]
    roles = {line["role"] for line in run.logs.with_key("pool_event")}
    assert roles == {"primary", "replica"}


def test_without_a_replica_read_only_units_run_on_the_primary_and_nothing_is_counted(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    try:
        with invoked() as run:
            assert not on_standby(single_statement=True)
        assert "DbReplicaReads" not in run.metrics
        assert "replica_pool_summary" not in run.summary()
    finally:
        reset_database_state()


def test_a_write_in_a_read_only_unit_is_refused_not_sent_to_the_primary(
    replica_app: Callable[..., None], database: DatabaseTarget
) -> None:
    table = f"replica_write_{uuid.uuid4().hex[:8]}"
    with invoked() as run:
        for single_statement in (True, False):
            with pytest.raises(sqlalchemy.exc.DBAPIError) as refused:
                db.run_in_transaction(
                    lambda c: c.execute(text(f"create table {table} (id int)")),
                    read_only=True,
                    single_statement=single_statement,
                )
            assert sqlstate(refused.value) == "25006"  # read_only_sql_transaction, from the standby
    assert run.fallbacks() == []
    assert run.summary()["pool_summary"]["replica_reads"] == 0
    with db.get_engine().connect() as connection:  # the primary never saw it
        assert connection.execute(text("select to_regclass(:t)"), {"t": table}).scalar() is None


def test_a_malformed_lsn_is_refused_before_anything_runs(replica_app: Callable[..., None]) -> None:
    for token in ("", "0/", "16/B374D848; drop table notes", "x" * 500):
        with pytest.raises(InvalidLsnError):
            on_standby(after_lsn=token)


# --- read-your-writes and bounded staleness ------------------------------------------------------------------------


@pytest.mark.local_stack
@pytest.mark.parametrize("how", ["single statement", "transaction", "orm"])
def test_a_read_after_a_write_sees_it_with_the_commit_lsn(
    replica_app: Callable[..., None], paused_replay: None, standby: Engine, how: str
) -> None:
    with invoked() as run:
        probe_id = _write_probe(how)
        token = commit_lsn()
        assert token is not None
        # Replay is paused: without the token the replica answers, without the write; with it, the primary does.
        assert _read_probe(probe_id) == (True, None)
        assert _read_probe(probe_id, after_lsn=token) == (False, how)
    (fallback,) = run.fallbacks()
    assert fallback["reason"] == "replica has not replayed the commit the read must see"
    assert fallback["sqlstate"] == "DBK03"
    assert run.metrics["DbReplicaFallback"] == [1.0]

    stack.set_replay_paused(False)
    wait_replayed(standby, token)
    with invoked() as run:
        assert _read_probe(probe_id, after_lsn=token) == (True, how)
    assert run.fallbacks() == []


def test_without_a_replica_the_commit_lsn_is_not_read(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    try:
        with invoked():
            db.run_in_transaction(lambda c: c.execute(text("select 1")), single_statement=True)
            assert commit_lsn() is None
    finally:
        reset_database_state()


@pytest.mark.local_stack
def test_a_replica_lagging_past_the_bound_is_skipped_until_it_catches_up(
    replica_app: Callable[..., None], database: DatabaseTarget, standby: Engine
) -> None:
    replica_app(DB_REPLICA_MAX_LAG="1")
    stack.set_replay_paused(True)
    try:
        with invoked() as run:
            probe_id = _write_probe("single statement")
            token = commit_lsn()
            assert token is not None
            # Within the bound the replica answers (stale); past it, the primary does.
            assert _read_probe(probe_id) == (True, None)
            time.sleep(1.3)
            _write_probe("single statement")  # WAL the paused replica receives but does not replay
            assert _read_probe(probe_id) == (False, "single statement")
        (fallback,) = run.fallbacks()
        assert fallback["reason"] == "replica lags more than DB_REPLICA_MAX_LAG"
    finally:
        stack.set_replay_paused(False)
    wait_replayed(standby, token)
    with invoked() as run:
        assert _read_probe(probe_id) == (True, "single statement")
        # An idle primary: the last replayed commit gets older than the bound, yet nothing is left to replay.
        time.sleep(1.3)
        assert on_standby(single_statement=True)
    assert run.fallbacks() == []


# --- failover: the replica's endpoint refuses, sleeps, wakes slowly, drops the session ------------------------------


@pytest.mark.neon_standin
@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        ("endpoint_disabled", "replica refused by the provider"),
        ("quota_exceeded", "replica refused by the provider"),
        ("compute_unreachable", "replica unreachable"),
        ("too_many_connections", "replica unreachable"),
    ],
)
def test_a_refusing_replica_sends_reads_to_the_primary_and_is_skipped_for_a_while(
    replica_app: Callable[..., None], replica: StandinControl, database: DatabaseTarget, refusal: str, reason: str
) -> None:
    replica.refuse(refusal, times=None)
    attempts = replica.endpoint_status()["counters"]["startups"]
    with invoked() as run:
        started = time.monotonic()
        assert not on_standby(single_statement=True)
        first = time.monotonic() - started
        assert not on_standby(single_statement=True)
    assert first < 2.0
    skipped_line, *_ = run.fallbacks()[1:]
    first_line = run.fallbacks()[0]
    assert first_line["reason"] == reason
    assert skipped_line["reason"].startswith("skipping the replica for a while")
    assert len(run.fallbacks()) == 2  # one line per unit, nothing else at WARNING about the replica
    warnings = [line["message"] for line in run.logs.records if line["level"] in ("WARNING", "ERROR")]
    assert warnings == [FALLBACK, FALLBACK]  # the replica's connect attempts are logged at DEBUG only
    assert run.metrics["DbReplicaFallback"] == [2.0]
    assert run.metrics["DbReplicaReads"] == [0.0]
    if reason == "replica refused by the provider":
        assert first_line["action"].startswith("Neon console")
    # The second unit did not even try: the replica's endpoint saw only the first unit's attempts.
    tried = replica.endpoint_status()["counters"]["startups"] - attempts
    assert 1 <= tried <= 8
    assert_no_secret(database.password, *run.logs.lines)


@pytest.mark.neon_standin
def test_a_replica_waking_longer_than_its_budget_sends_reads_to_the_primary(
    replica_app: Callable[..., None], replica: StandinControl
) -> None:
    replica_app(DB_REPLICA_CONNECT_BUDGET="0.5")
    with invoked():
        assert on_standby(single_statement=True)  # warm: the replica's pooled connection is open
    wakes = replica.endpoint_status()["counters"]["wakes"]
    replica.configure(wake_delay=2)
    replica.suspend()  # its session gets 57P01; the next connect waits for the wake
    with invoked(timeout_ms=3_000) as run:
        started = time.monotonic()
        assert not on_standby(single_statement=True)
        elapsed = time.monotonic() - started
    (fallback,) = run.fallbacks()
    assert fallback["reason"] == "replica unreachable"
    assert elapsed < 1.5  # the budget (0.5 s), then the primary
    # The wake goes on without the client (as Neon's does): once it is up, the replica serves again.
    time.sleep(2.0)
    reset_database_state()  # a new environment: no cooldown left from the failure
    with invoked():
        assert on_standby(single_statement=True)
    assert replica.endpoint_status()["counters"]["wakes"] == wakes + 1


@pytest.mark.neon_standin
def test_a_replica_that_suspended_while_idle_is_reconnected_not_skipped(
    replica_app: Callable[..., None], replica: StandinControl
) -> None:
    with invoked():
        assert on_standby(single_statement=True)
    replica.suspend()
    with invoked() as run:
        assert on_standby(single_statement=True)  # the dead pooled connection is replaced; the compute wakes
    assert run.fallbacks() == []
    assert run.summary()["replica_pool_summary"]["connections_opened"] == 1


@pytest.mark.neon_standin
def test_a_replica_session_lost_mid_unit_reruns_the_unit_on_the_primary(
    replica_app: Callable[..., None], replica: StandinControl
) -> None:
    with invoked():
        assert on_standby(single_statement=True)
    timer = threading.Timer(0.3, replica.suspend)
    with invoked() as run:
        timer.start()
        row = db.run_in_transaction(
            lambda c: c.execute(text(f"select pg_sleep(0.8), ({WHO})")).one(), read_only=True, single_statement=True
        )
    timer.join()
    assert row[1] is False
    (fallback,) = run.fallbacks()
    assert fallback["reason"] == "replica connection lost"


@pytest.mark.neon_standin
def test_no_request_fails_because_the_replica_is_away(
    replica_app: Callable[..., None], replica: StandinControl, database: DatabaseTarget, standby: Engine
) -> None:
    replica_app(DB_REPLICA_MAX_LAG="0.5", DB_REPLICA_CONNECT_BUDGET="0.5")
    scenarios = replica_faults(replica, local_stack=database.local_stack)
    failed: list[str] = []
    lines: list[str] = []
    for name, inject in scenarios.items():
        reset_database_state()
        with invoked():
            on_standby(single_statement=True)  # a warm replica connection when the fault starts
        inject()
        served = {True: 0, False: 0}
        writes = 0
        try:
            for request in range(12):
                with invoked(timeout_ms=3_000) as run:
                    try:
                        if request % 4 == 0:
                            _write_probe("single statement")
                            writes += 1
                        served[on_standby(single_statement=True)] += 1
                        served[on_standby()] += 1
                    except Exception as error:  # noqa: BLE001 - counted: the assertion below names each one
                        failed.append(f"{name}: {type(error).__name__}: {error}")
                lines.extend(run.logs.lines)
                time.sleep(0.1)
        finally:
            end_replica_faults(replica, local_stack=database.local_stack)
        figures.record(
            "read replica",
            f"{name}: {served[False] + served[True]} read-only units ({served[False]} on the primary, {served[True]} "
            f"on the replica) and {writes} writes in 12 invocations, {len(failed)} failed so far",
        )
        if name != REPLAY_PAUSED:
            assert served[True] == 0, f"{name}: the replica served reads while it was away"
    assert failed == []
    assert_no_secret(database.password, *lines)


@contextmanager
def replica_behind_proxy(
    database: DatabaseTarget, replica_url: str, monkeypatch: pytest.MonkeyPatch, **extra: str
) -> Iterator[Proxy]:
    """The app with its read replica reached through devtools/proxy.py (round trips counted, faults on demand)."""
    host, port = connect_address(replica_url)
    with Proxy(host, port) as proxy:
        read_url = with_port(replica_url, proxy.port)
        configure_replica(
            monkeypatch, pooled_url=database.pooled_url, read_url=read_url, pooler_hosts=database.pooler_hosts, **extra
        )
        monkeypatch.setenv("DB_POOLER_HOSTS", f"{database.pooler_hosts},{pooler_entry(replica_url, proxy.port)}")
        reset_database_state()
        try:
            yield proxy
        finally:
            reset_database_state()


def test_a_replica_that_stops_answering_mid_unit_leaves_the_primary_half_the_time(
    database: DatabaseTarget, replica_url: str, monkeypatch: pytest.MonkeyPatch, probe_table: None
) -> None:
    with replica_behind_proxy(database, replica_url, monkeypatch) as proxy:
        with invoked():
            assert on_standby(single_statement=True)  # a warm replica connection: the stall meets a unit
        proxy.blackhole = True  # a partition: nothing comes back, nothing is refused
        try:
            with invoked(timeout_ms=4_000) as run:
                started = time.monotonic()
                assert not on_standby(single_statement=True)
                elapsed = time.monotonic() - started
        finally:
            proxy.blackhole = False
    (fallback,) = run.fallbacks()
    assert fallback["reason"] == "replica connection lost"
    # The replica had half of what was left (4 s less the 0.5 s answer margin, so 1.75 s), then the primary answered,
    # all before the invocation's answer margin (a deadline, not a speed: the upper bound is the margin itself).
    assert 1.5 < elapsed < 3.5


# --- round trips --------------------------------------------------------------------------------------------------


@pytest.mark.pipelined_driver
def test_a_warm_read_on_the_replica_is_one_round_trip_with_the_lag_guard(
    database: DatabaseTarget, replica_url: str, monkeypatch: pytest.MonkeyPatch, probe_table: None
) -> None:
    with replica_behind_proxy(database, replica_url, monkeypatch, DB_REPLICA_MAX_LAG="5") as proxy, invoked():
        assert on_standby(single_statement=True)  # connects: not counted
        single = flights(proxy, lambda: on_standby(single_statement=True))
        several = flights(proxy, on_standby)
        token = flights(proxy, lambda: on_standby(single_statement=True, after_lsn="0/1"))
    # The guard rides with the statement; a unit of several statements adds only its COMMIT.
    assert (single, several, token) == (1, 2, 1)
    figures.record("read replica", f"round trips of a warm read on the replica with the lag guard: {single}")
