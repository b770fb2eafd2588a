"""The engine against the real pooler: verified TLS, pool events, exhaustion, dead connections, correctness."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pg8000.dbapi
import pytest
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from devtools import stack
from devtools.proxy import Proxy
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.logs import captured_logs
from devtools.testing.proxied import ReplyLost
from devtools.testing.urls import connect_address, pooler_entry, with_port
from lib.dbkit import engine as db
from lib.dbkit import invocation, pg8000_internals, pg_pipeline
from lib.dbkit.errors import CommitOutcomeUnknownError, DatabaseUnavailableError, PoolExhaustedError
from lib.dbkit.pg_errors import sqlstate
from lib.dbkit.settings import Settings
from tests.kit.integration.conftest import KIT_TEST_TABLE

STOCK = os.environ.get("DB_DRIVER") == "stock"


def _serverless(url: str, database: DatabaseTarget, **extra: str) -> Settings:
    return Settings.from_env(
        {"DATABASE_URL": url, "DB_MODE": "serverless", "DB_POOLER_HOSTS": database.pooler_hosts, **extra}
    )


@pytest.fixture
def serverless_app(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    yield
    db.dispose_engine()


def _configure(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """Change the app's environment for one test; the next use builds settings and engine from it."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    reset_database_state()


def _select(value: int) -> Any:
    return lambda connection: connection.execute(text("select cast(:v as int)"), {"v": value}).scalar_one()


def test_connections_use_verified_tls_13(database: DatabaseTarget) -> None:
    engine = db.build_engine(_serverless(database.pooled_url, database))
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            tls = raw._usock  # type: ignore[union-attr]
            assert tls.version() == "TLSv1.3"
            # getpeercert() returns the certificate only when it was verified against the CA; SNI is the host name.
            assert tls.getpeercert()["subjectAltName"]
            assert tls.server_hostname == urlsplit(database.pooled_url).hostname
            assert connection.execute(text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_pool_events_are_logged_in_order_with_their_fields(serverless_app: None) -> None:
    context = FakeLambdaContext()
    with captured_logs() as logs:
        invocation.start(context)
        assert db.run_in_transaction(_select(1)) == 1
        assert db.run_in_transaction(_select(2)) == 2
        invocation.finish()

    events = logs.with_key("pool_event")
    names = [line["pool_event"] for line in events]
    assert names == ["first_connect", "connect", "checkout", "reset", "checkin", "checkout", "reset", "checkin"]
    assert len({line["connection_id"] for line in events}) == 1
    assert all(line["request_id"] == context.aws_request_id for line in events)
    assert all(line["level"] == "DEBUG" for line in events)
    checkouts = [line for line in events if line["pool_event"] == "checkout"]
    assert all(line["checkout_wait_ms"] >= 0 for line in checkouts)
    assert checkouts[1]["connection_age_s"] >= checkouts[0]["connection_age_s"] >= 0
    assert checkouts[0]["pool"] == {"size": 1, "checked_out": 1, "checked_in": 0, "overflow": 0}

    (summary,) = logs.with_key("pool_summary")
    assert summary["level"] == "INFO"
    assert summary["pool_summary"]["connections_opened"] == 1
    assert summary["pool_summary"]["checkouts"] == 2
    assert summary["pool_summary"]["invalidations"] == 0
    assert summary["pool_summary"]["request_id"] == context.aws_request_id


def test_exhaustion_becomes_a_typed_error_within_the_bound(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch, serverless_app: None
) -> None:
    _configure(monkeypatch, DB_POOL_TIMEOUT="0.2")
    with db.get_engine().connect() as holder:
        holder.execute(text("select 1"))  # the only pooled connection is now checked out
        started = time.monotonic()
        with pytest.raises(PoolExhaustedError) as raised:
            db.run_in_transaction(_select(1))
        elapsed = time.monotonic() - started
    assert raised.value.retry_after >= 1
    # 1 + EXHAUSTION_RETRIES waits of pool_timeout plus short jittered pauses: it does not hang.
    assert elapsed < 3.0
    assert db.run_in_transaction(_select(3)) == 3


def _backend_alive(engine: Engine, pid: int) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(text("select count(*) from pg_stat_activity where pid = :pid"), {"pid": pid}).scalar()
        )


def test_a_terminated_backend_is_survived_by_the_next_request(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Direct connection in server mode: the killed backend is exactly the pooled client connection.
    _configure(monkeypatch, DATABASE_URL=database.direct_url, DB_MODE="server", DB_POOL_PRE_PING="false")
    try:
        pid = db.run_in_transaction(lambda s: s.execute(text("select pg_backend_pid()")).scalar_one())
        killer = db.build_engine(Settings.from_env({"DATABASE_URL": database.direct_url}))
        with killer.begin() as connection:
            assert connection.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        # pg_terminate_backend only signals: wait until the backend has exited, so its FATAL is on the socket.
        deadline = time.monotonic() + 10
        while _backend_alive(killer, pid):
            assert time.monotonic() < deadline, f"backend {pid} still running 10 s after pg_terminate_backend"
            time.sleep(0.01)
        killer.dispose()
        with captured_logs() as logs:
            assert db.run_in_transaction(_select(7)) == 7
        assert [line["pool_event"] for line in logs.with_key("pool_event")].count("invalidate") >= 1
        # The backend's parting FATAL (57P01) is waiting on the socket: the checkout sees it and connects anew,
        # before anything is sent, so there is no failed unit to re-run.
        assert not any(line["message"] == "transaction failed on a dead connection" for line in logs.records)
    finally:
        db.dispose_engine()


@pytest.mark.local_stack
def test_a_pgbouncer_restart_is_survived_by_the_next_request(serverless_app: None) -> None:
    assert db.run_in_transaction(_select(1)) == 1
    stack.restart_pgbouncer()
    with captured_logs() as logs:
        assert db.run_in_transaction(_select(2)) == 2
    assert "invalidate" in [line["pool_event"] for line in logs.with_key("pool_event")]


def test_a_statement_is_bounded_by_the_invocation_deadline(serverless_app: None) -> None:
    invocation.start(FakeLambdaContext(timeout_ms=1500))
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError):
            db.run_in_transaction(lambda s: s.execute(text("select pg_sleep(10)")).all())
        assert time.monotonic() - started < 5
    finally:
        invocation.finish()
    assert db.run_in_transaction(_select(5)) == 5


def _hammer(engine: Engine, worker: int, rounds: int, wrong: list[str], errors: list[str]) -> None:
    for round_number in range(rounds):
        expected = worker * 100_000 + round_number
        try:
            with Session(engine) as session, session.begin():
                got = session.execute(text("select cast(:v as int)"), {"v": expected}).scalar_one()
        except Exception as error:  # noqa: BLE001 - every error is a finding here
            errors.append(f"{type(error).__name__}: {error}")
            continue
        if got != expected:
            wrong.append(f"worker {worker} expected {expected} got {got}")


def test_concurrent_clients_on_a_one_server_pool_get_their_own_rows(database: DatabaseTarget) -> None:
    if database.single_pool_url is None:
        pytest.skip("needs TEST_SINGLE_POOL_DATABASE_URL (a pool_size=1 pooler database) outside the local stack")
    settings = _serverless(database.single_pool_url, database)
    engines = [db.build_engine(settings) for _ in range(6)]
    wrong: list[str] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_hammer, args=(engine, number, 150, wrong, errors))
        for number, engine in enumerate(engines)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for engine in engines:
        engine.dispose()
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []
    assert errors == []


def _insert_returning_title(title: str) -> Any:
    statement = text(f"INSERT INTO {KIT_TEST_TABLE} (title) VALUES (:t) RETURNING title")
    return lambda connection: connection.execute(statement, {"t": title}).scalar_one()


def _two_statements(value: int) -> Any:
    def work(connection: Connection) -> Any:
        connection.execute(text("select 1")).all()
        return connection.execute(text("select cast(:v as int)"), {"v": value}).scalar_one()

    return work


def _hammer_units(holder: db.EngineHolder, worker: int, rounds: int, wrong: list[str], errors: list[str]) -> None:
    """Single-statement reads and writes, and two-statement units, each checking it got its own rows back."""
    with db.execution_environment(holder):
        invocation.start(FakeLambdaContext(timeout_ms=60_000))  # so the server-side limits ride in every flight
        try:
            for number in range(rounds):
                expected = worker * 100_000 + number
                title = f"hammer {worker} {number} {uuid.uuid4().hex[:8]}"
                try:
                    if number % 3 == 0:
                        got = db.run_in_transaction(_select(expected), single_statement=True, read_only=True)
                    elif number % 3 == 1:
                        row = db.run_in_transaction(_insert_returning_title(title), single_statement=True)
                        got = expected if row == title else -1
                    else:
                        got = db.run_in_transaction(_two_statements(expected))
                except Exception as error:  # noqa: BLE001 - every error is a finding here
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                if got != expected:
                    wrong.append(f"worker {worker} round {number}: expected {expected} got {got}")
        finally:
            invocation.finish()
            holder.dispose()


@pytest.mark.pipelined_driver
def test_single_statement_units_on_a_one_server_pool_get_their_own_rows(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch, kit_table: str
) -> None:
    if database.single_pool_url is None:
        pytest.skip("needs TEST_SINGLE_POOL_DATABASE_URL (a pool_size=1 pooler database) outside the local stack")
    configure_serverless(monkeypatch, pooled_url=database.single_pool_url, pooler_hosts=database.pooler_hosts)
    wrong: list[str] = []
    errors: list[str] = []
    workers, rounds = 8, 150
    threads = [
        threading.Thread(target=_hammer_units, args=(db.EngineHolder(), number, rounds, wrong, errors))
        for number in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []
    assert errors == []


@pytest.fixture
def counted(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    """The app in serverless mode, talking to the pooler through a round-trip-counting proxy."""
    host, port = connect_address(database.pooled_url)
    with Proxy("127.0.0.1" if host == "localhost" else host, port) as proxy:
        url = with_port(database.pooled_url, proxy.port)
        configure_serverless(monkeypatch, pooled_url=url, pooler_hosts=pooler_entry(database.pooled_url, proxy.port))
        yield proxy
        db.dispose_engine()


def _flights(proxy: Proxy, action: Any) -> int:
    proxy.reset_stats()
    action()
    return proxy.stats.client_flights


@pytest.mark.pipelined_driver
def test_round_trips_of_the_serverless_profile(counted: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    first_request = _flights(counted, lambda: db.run_in_transaction(_select(1)))
    assert counted.stats.connections == 1
    assert first_request <= 12
    # Warm: BEGIN rides with the parameterised statement (1), COMMIT (1); no liveness ping while busy.
    assert _flights(counted, lambda: db.run_in_transaction(_select(2))) == 2
    assert _flights(counted, db.ping) == 1
    assert counted.stats.connections == 0


@pytest.mark.pipelined_driver
@pytest.mark.parametrize("delay_ms", [0.0, 2.0])
def test_single_statement_units_are_one_round_trip_and_a_first_request_six(
    counted: Proxy, delay_ms: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted.delay_ms = delay_ms
    invocation.start(FakeLambdaContext(timeout_ms=10_000))
    try:
        # SSLRequest, ClientHello, Finished + startup, two SCRAM messages, then the statement with its limits.
        assert _flights(counted, lambda: db.run_in_transaction(_select(1), single_statement=True)) == 6
        assert _flights(counted, lambda: db.run_in_transaction(_select(2), single_statement=True)) == 1
        assert _flights(counted, lambda: db.run_in_transaction(_select(3), single_statement=True, read_only=True)) == 1
        # Multi-statement units keep BEGIN (and the limits) riding with the first statement, then COMMIT.
        assert _flights(counted, lambda: db.run_in_transaction(_select(4))) == 2
    finally:
        invocation.finish()


@pytest.mark.pipelined_driver
def test_an_idle_connection_is_pinged_once_before_reuse(counted: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(monkeypatch, DB_IDLE_PING_SECONDS="0.05")
    db.run_in_transaction(_select(1))
    time.sleep(0.1)
    assert _flights(counted, lambda: db.run_in_transaction(_select(2))) == 3


def test_health_ping_recovers_from_a_dropped_connection(counted: Proxy) -> None:
    db.ping()
    assert counted.drop_connections() == 1
    db.ping()
    assert counted.stats.connections == 2


def test_too_many_connections_at_connect_is_a_503_not_a_500(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Postgres answers 53300 when max_connections is used up: retried within the deadline, then "unavailable".
    _configure(monkeypatch, DATABASE_URL=database.direct_url, DB_MODE="server", DB_POOL="nullpool")
    connect_args = Settings.from_env({"DATABASE_URL": database.direct_url}).database.connect_args()
    hogs = []
    try:
        refused: pg8000.dbapi.DatabaseError | None = None
        for _ in range(stack.MAX_CONNECTIONS + 5):
            try:
                hogs.append(pg_pipeline.connect(**connect_args))
            except pg8000.dbapi.DatabaseError as error:
                refused = error
                break
        assert sqlstate(refused) == "53300"
        invocation.start(FakeLambdaContext(timeout_ms=1500))
        try:
            with pytest.raises(DatabaseUnavailableError):
                db.run_in_transaction(_select(1))
        finally:
            invocation.finish()
    finally:
        for hog in hogs:
            hog.close()
        db.dispose_engine()


def _insert(title: str) -> Any:
    return text(f"INSERT INTO {KIT_TEST_TABLE} (title) VALUES (:title) RETURNING id").bindparams(title=title)


def _create_with_key(key: str) -> Any:
    # Idempotent in one statement, as an Idempotency-Key makes a create: run twice, it stores one row, answers its id.
    return text(
        f"INSERT INTO {KIT_TEST_TABLE} (title, key) VALUES (:key, :key) "
        "ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key RETURNING id"
    ).bindparams(key=key)


def _stored(title: str) -> int:
    count: int = db.run_in_transaction(
        lambda c: c.execute(text(f"SELECT count(*) FROM {KIT_TEST_TABLE} WHERE title = :t"), {"t": title}).scalar_one()
    )
    return count


@pytest.fixture
def reply_lost(counted: Proxy, kit_table: str) -> ReplyLost:
    db.run_in_transaction(_select(1))  # connected: the fault hits a statement, not the connect
    return ReplyLost(counted)


def test_a_commit_whose_reply_is_lost_is_an_unknown_outcome_not_a_failure(reply_lost: ReplyLost) -> None:
    title = f"commit reply lost {uuid.uuid4()}"

    def write_then_lose_the_commit_reply(connection: Connection) -> None:
        connection.execute(_insert(title))
        reply_lost.arm()  # COMMIT is sent next

    with captured_logs() as logs, pytest.raises(CommitOutcomeUnknownError) as raised:
        db.run_in_transaction(write_then_lose_the_commit_reply)
    assert raised.value.retry_after >= 1
    assert reply_lost.armed == 1, "never re-run"
    # With the pipelined driver COMMIT went in one flight and landed: exactly what the client cannot know. (Stock
    # pg8000 sends COMMIT over three Syncs: the fault stops it before its Execute.)
    assert _stored(title) == (0 if STOCK else 1)
    (line,) = [r for r in logs.records if r["message"] == "transaction failed on a dead connection"]
    assert (line["commit_sent"], line["retrying"]) == (True, False)


@pytest.mark.pipelined_driver
def test_a_single_statement_write_whose_reply_is_lost_is_an_unknown_outcome(reply_lost: ReplyLost) -> None:
    title = f"single statement reply lost {uuid.uuid4()}"

    def lose_the_reply_to_the_write(connection: Connection) -> None:
        reply_lost.arm()
        connection.execute(_insert(title))

    with pytest.raises(CommitOutcomeUnknownError):
        db.run_in_transaction(lose_the_reply_to_the_write, single_statement=True)
    assert reply_lost.armed == 1
    assert _stored(title) == 1


@pytest.mark.parametrize("single_statement", [False, True])
def test_idempotent_work_is_re_run_once_after_an_unknown_outcome(reply_lost: ReplyLost, single_statement: bool) -> None:
    key = f"idempotent re-run {uuid.uuid4()}"

    def create_once(connection: Connection) -> Any:
        if reply_lost.armed == 0 and single_statement:
            reply_lost.arm()
        created = connection.execute(_create_with_key(key)).scalar_one()
        if reply_lost.armed == 0:
            reply_lost.arm()
        return created

    with captured_logs() as logs:
        note_id = db.run_in_transaction(create_once, single_statement=single_statement, idempotent=True)
    assert reply_lost.armed == 1
    assert _stored(key) == 1
    stored_id = db.run_in_transaction(
        lambda c: c.execute(text(f"SELECT id FROM {KIT_TEST_TABLE} WHERE title = :t"), {"t": key}).scalar_one()
    )
    assert stored_id == note_id
    (line,) = [r for r in logs.records if r["message"] == "transaction failed on a dead connection"]
    # On the stock driver single_statement is a plain transaction: the reply lost was the statement's, before COMMIT.
    assert (line["commit_sent"], line["retrying"]) == (not (STOCK and single_statement), True)


@pytest.mark.parametrize("single_statement", [False, True])
def test_a_read_whose_reply_is_lost_is_re_run(reply_lost: ReplyLost, single_statement: bool) -> None:
    def read(connection: Connection) -> Any:
        if reply_lost.armed == 0:
            reply_lost.arm()
        return connection.execute(text("select cast(:v as int)"), {"v": 11}).scalar_one()

    assert db.run_in_transaction(read, single_statement=single_statement, read_only=True) == 11
    assert reply_lost.armed == 1


@pytest.mark.pipelined_driver
def test_read_only_units_cannot_write(serverless_app: None, kit_table: str) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
        db.run_in_transaction(lambda c: c.execute(_insert("read only")), single_statement=True, read_only=True)
    assert sqlstate(raised.value) == "25006"


def test_server_limits_are_transaction_local_and_follow_the_deadline(serverless_app: None) -> None:
    show = "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), " + (
        "current_setting('idle_in_transaction_session_timeout')"
    )
    invocation.start(FakeLambdaContext(timeout_ms=3000))
    try:
        inside = db.run_in_transaction(lambda c: tuple(c.execute(text(show)).one()))
        single = db.run_in_transaction(lambda c: tuple(c.execute(text(show)).one()), single_statement=True)
    finally:
        invocation.finish()
    for statement_ms, lock_ms, idle_ms in (inside, single):
        assert 1500 <= int(statement_ms.removesuffix("ms")) <= 2250
        assert lock_ms == statement_ms
        assert int(idle_ms.removesuffix("ms")) <= 2500
    # Outside any unit of work the server's own defaults are back: nothing leaked into the pooled session.
    engine = db.get_engine()
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        # pg8000's own simple Query: no BEGIN, so no limits of ours ride along.
        assert pg8000_internals.execute_simple_unpipelined(raw, show).rows == [["0", "0", "0"]]


def test_server_mode_uses_the_configured_limits(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(
        monkeypatch,
        DATABASE_URL=database.direct_url,
        DB_MODE="server",
        DB_STATEMENT_TIMEOUT="7",
        DB_LOCK_TIMEOUT="2.5",
        DB_IDLE_IN_TRANSACTION_TIMEOUT="9",
    )
    try:
        show = "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
        assert db.run_in_transaction(lambda c: tuple(c.execute(text(show)).one())) == ("7s", "2500ms")
    finally:
        db.dispose_engine()


def _write_after(counted: Proxy, close: Callable[[], object]) -> None:
    title = f"closed in the pool {uuid.uuid4()}"
    db.run_in_transaction(_select(1))
    close()
    time.sleep(0.1)
    with captured_logs() as logs:
        db.run_in_transaction(lambda c: c.execute(_insert(title)), single_statement=True)
    assert _stored(title) == 1
    events = [line["pool_event"] for line in logs.with_key("pool_event")]
    assert "invalidate" in events
    # Found closed at checkout, before anything was sent: no failed unit, no unknown outcome.
    assert not any(r["message"] == "transaction failed on a dead connection" for r in logs.records)


def test_a_write_on_a_connection_reset_in_the_pool_is_not_an_unknown_outcome(counted: Proxy, kit_table: str) -> None:
    _write_after(counted, counted.drop_connections)


@pytest.mark.local_stack
def test_a_write_after_a_pgbouncer_restart_is_not_an_unknown_outcome(counted: Proxy, kit_table: str) -> None:
    _write_after(counted, stack.restart_pgbouncer)
