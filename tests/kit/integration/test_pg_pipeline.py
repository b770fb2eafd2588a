"""lib.dbkit.pg_pipeline through PgBouncer (transaction mode, TLS, SCRAM): round trips, pooler safety, errors, types.

Round trips are client→server flights counted by devtools.proxy; "stock" rows pin pg8000's own figures, so a
change in either shows up here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, ClassVar

import pg8000.dbapi
import pytest
import sqlalchemy as sa
from pg8000.dbapi import DatabaseError
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.pool import QueuePool

from devtools.proxy import Proxy
from devtools.testing.database import DatabaseTarget
from lib.dbkit import pg8000_internals, pg_pipeline
from lib.dbkit.dsn import DatabaseUrl, parse_database_url

pytestmark = pytest.mark.integration

Connect = Callable[..., Any]
DRIVERS: dict[str, Connect] = {"stock": pg8000.dbapi.connect, "pipeline": pg_pipeline.connect}
STOCK_DIALECT = "postgresql+pg8000"
FIRST_REQUEST_TARGET = 12
THREADS = 4
QUERIES_PER_THREAD = 150
# pg8000.dbapi raises DatabaseError for every server error; the SQLSTATE tells them apart.
ERRORS = {
    "syntax_error": ("selec %s", (1,), "42601"),
    "division_by_zero": ("select 1 / %s", (0,), "22012"),
    "unique_violation": ("insert into {table} (id) values (%s)", ("taken",), "23505"),
}


@pytest.fixture(scope="module")
def pooled(database: DatabaseTarget) -> DatabaseUrl:
    # The driver against PgBouncer itself: stock pg8000 is compared too, and it knows no hostaddr.
    return parse_database_url(database.pooler_url)


@pytest.fixture
def proxy(pooled: DatabaseUrl) -> Iterator[Proxy]:
    with Proxy(pooled.host, pooled.port) as started:
        yield started


@pytest.fixture
def via_proxy(pooled: DatabaseUrl, proxy: Proxy) -> DatabaseUrl:
    # The host name stays, so TLS still verifies it; only the port moves to the proxy.
    return dataclasses.replace(pooled, port=proxy.port)


@pytest.fixture(scope="module")
def taken_key_table(database: DatabaseTarget) -> Iterator[str]:
    """A table of our own holding the key 'taken', so a first statement can hit a unique violation."""
    table = f"pg_pipeline_probe_{uuid.uuid4().hex[:12]}"
    admin = pg8000.dbapi.connect(**parse_database_url(database.direct_url).connect_args())
    try:
        cursor = admin.cursor()
        cursor.execute(f"create table {table} (id text primary key)")
        cursor.execute(f"insert into {table} values ('taken')")
        admin.commit()
        yield table
    finally:
        admin.cursor().execute(f"drop table if exists {table}")
        admin.commit()
        admin.close()


def flights(proxy: Proxy, action: Callable[[], object]) -> int:
    proxy.reset_stats()
    action()
    return proxy.stats.client_flights


def select_value(cursor: Any, value: int) -> None:
    cursor.execute("select %s::int", (value,))
    assert cursor.fetchall() == ([value],)


# Round trips of the DB-API connection: (stock, pipeline)


@pytest.mark.parametrize(("driver", "expected"), [("stock", 4), ("pipeline", 1)])
def test_begin_and_first_parameterised_statement(
    via_proxy: DatabaseUrl, proxy: Proxy, driver: str, expected: int
) -> None:
    conn = DRIVERS[driver](**via_proxy.connect_args())
    assert flights(proxy, lambda: select_value(conn.cursor(), 1)) == expected
    conn.close()


@pytest.mark.parametrize(("driver", "expected"), [("stock", 3), ("pipeline", 1)])
def test_parameterised_statement_in_a_transaction(
    via_proxy: DatabaseUrl, proxy: Proxy, driver: str, expected: int
) -> None:
    conn = DRIVERS[driver](**via_proxy.connect_args())
    cursor = conn.cursor()
    select_value(cursor, 1)
    assert flights(proxy, lambda: select_value(cursor, 2)) == expected
    conn.close()


@pytest.mark.parametrize(("driver", "expected"), [("stock", 2), ("pipeline", 1)])
def test_begin_and_first_statement_without_parameters(
    via_proxy: DatabaseUrl, proxy: Proxy, driver: str, expected: int
) -> None:
    conn = DRIVERS[driver](**via_proxy.connect_args())
    assert flights(proxy, lambda: conn.cursor().execute("select 1")) == expected
    conn.close()


@pytest.mark.parametrize("end", ["commit", "rollback"])
@pytest.mark.parametrize(("driver", "expected"), [("stock", 3), ("pipeline", 1)])
def test_commit_and_rollback(via_proxy: DatabaseUrl, proxy: Proxy, driver: str, expected: int, end: str) -> None:
    conn = DRIVERS[driver](**via_proxy.connect_args())
    select_value(conn.cursor(), 1)
    assert flights(proxy, getattr(conn, end)) == expected
    assert not conn._in_transaction
    conn.close()


def test_ping_is_one_round_trip_and_leaves_no_transaction(via_proxy: DatabaseUrl, proxy: Proxy) -> None:
    conn = pg_pipeline.connect(**via_proxy.connect_args())
    assert flights(proxy, lambda: pg_pipeline.ping(conn)) == 1
    assert not conn._in_transaction
    conn.close()


def test_connections_use_tcp_nodelay_and_keepalive(pooled: DatabaseUrl) -> None:
    # Nagle would otherwise hold the startup message until the server ACKs the TLS Finished: +1 round trip.
    conn = pg_pipeline.connect(**pooled.connect_args())
    raw = conn._usock
    assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    select_value(conn.cursor(), 1)
    conn.close()


def test_unreachable_server_raises_pg8000s_interface_error(pooled: DatabaseUrl) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(pg8000.dbapi.InterfaceError, match="Can't create a connection"):
        pg_pipeline.connect(**(pooled.connect_args() | {"host": "127.0.0.1", "port": closed_port}))


# Round trips through SQLAlchemy: (stock dialect, pipeline dialect)


def make_engine(url: DatabaseUrl, drivername: str, **options: Any) -> sa.Engine:
    return sa.create_engine(
        url.sqlalchemy_url().set(drivername=drivername),
        connect_args={"ssl_context": url.ssl_context(), "timeout": url.effective_connect_timeout},
        pool_size=1,
        max_overflow=0,
        **options,
    )


def one_request(engine: sa.Engine, value: int = 7) -> None:
    with engine.begin() as connection:
        assert connection.scalar(sa.text("select cast(:v as int)"), {"v": value}) == value


@pytest.mark.parametrize(
    ("drivername", "options", "after_connecting"),
    [
        (STOCK_DIALECT, {}, 8 + 4 + 3),
        # One query learns the default schema and isolation level (the kit's serverless engines skip it).
        (pg_pipeline.DRIVERNAME, {}, 1 + 1 + 1),
        (pg_pipeline.DRIVERNAME, {"ask_server_defaults": False}, 0 + 1 + 1),
    ],
)
def test_first_request_of_a_new_engine(
    via_proxy: DatabaseUrl, proxy: Proxy, drivername: str, options: dict[str, Any], after_connecting: int
) -> None:
    """Connecting, the dialect's first-connect queries, BEGIN + one parameterised SELECT, COMMIT."""
    engine = make_engine(via_proxy, drivername, **options)
    connected: list[int] = []
    # Runs right after the DB-API connect, before SQLAlchemy's own first-connect initialisation.
    sa.event.listen(engine, "connect", lambda *_: connected.append(proxy.stats.client_flights), insert=True)

    total = flights(proxy, lambda: one_request(engine))

    assert total - connected[0] == after_connecting
    if drivername == pg_pipeline.DRIVERNAME:
        assert total <= FIRST_REQUEST_TARGET
    engine.dispose()


@pytest.mark.parametrize(("drivername", "expected"), [(STOCK_DIALECT, 7), (pg_pipeline.DRIVERNAME, 2)])
def test_warm_request(via_proxy: DatabaseUrl, proxy: Proxy, drivername: str, expected: int) -> None:
    engine = make_engine(via_proxy, drivername)
    one_request(engine)
    assert flights(proxy, lambda: one_request(engine)) == expected
    engine.dispose()


@pytest.mark.parametrize(("drivername", "expected"), [(STOCK_DIALECT, 2), (pg_pipeline.DRIVERNAME, 1)])
def test_dialect_ping(via_proxy: DatabaseUrl, proxy: Proxy, drivername: str, expected: int) -> None:
    engine = make_engine(via_proxy, drivername)
    with engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        assert flights(proxy, lambda: engine.dialect.do_ping(dbapi_connection)) == expected
    engine.dispose()


def test_health_check_on_a_pooled_connection_is_one_round_trip(via_proxy: DatabaseUrl, proxy: Proxy) -> None:
    engine = make_engine(via_proxy, pg_pipeline.DRIVERNAME)
    one_request(engine)

    def health_check() -> None:
        with engine.connect() as connection:
            pg_pipeline.ping(connection.connection.dbapi_connection)

    assert flights(proxy, health_check) == 1
    engine.dispose()


# Pooler safety: PgBouncer database alias with pool_size=1, so every client shares one server connection


def run_concurrently(url: DatabaseUrl, connect: Connect, *, autocommit: bool) -> tuple[int, int, int]:
    """THREADS clients, QUERIES_PER_THREAD parameterised SELECTs, each checking its own value comes back."""
    counts = {"right": 0, "wrong": 0, "errors": 0}
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def client(thread: int) -> None:
        conn = connect(**url.connect_args(timeout=30))
        conn.autocommit = autocommit
        start.wait(timeout=60)
        for i in range(QUERIES_PER_THREAD):
            value = thread * 100_000 + i
            outcome = "right"
            try:
                cursor = conn.cursor()
                # A different statement text per thread: a statement parsed by another client gives itself away.
                cursor.execute(f"select %s::int, {thread}", (value,))
                if cursor.fetchall() != ([value, thread],):
                    outcome = "wrong"
                if not autocommit:
                    conn.commit()
            except (pg8000.dbapi.Error, OSError):
                outcome = "errors"
                # The stock driver may be out of step with the server after such an error: start afresh.
                with contextlib.suppress(pg8000.dbapi.Error, OSError):
                    conn.close()
                conn = connect(**url.connect_args(timeout=30))
                conn.autocommit = autocommit
            with lock:
                counts[outcome] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["right"], counts["wrong"], counts["errors"]


@pytest.fixture(scope="module")
def single_pool(database: DatabaseTarget) -> DatabaseUrl:
    if database.single_pool_url is None:
        pytest.skip("needs a PgBouncer database with pool_size=1 (TEST_SINGLE_POOL_DATABASE_URL)")
    return parse_database_url(database.single_pool_url)


@pytest.mark.parametrize("autocommit", [False, True], ids=["in_transactions", "one_sync_outside_transactions"])
def test_pipelined_statements_behind_a_single_server_pool_return_only_their_own_rows(
    single_pool: DatabaseUrl, autocommit: bool
) -> None:
    right, wrong, errors = run_concurrently(single_pool, pg_pipeline.connect, autocommit=autocommit)
    assert (wrong, errors) == (0, 0)
    assert right == THREADS * QUERIES_PER_THREAD


def test_control_stock_pg8000_autocommit_behind_the_pooler_mixes_up_statements(single_pool: DatabaseUrl) -> None:
    """CONTROL: the hazard exists (three Syncs per statement outside a transaction), so the test above means something.

    If this fails, the setup no longer reproduces the hazard; that is not a regression of pg_pipeline.
    """
    _right, wrong, errors = run_concurrently(single_pool, pg8000.dbapi.connect, autocommit=True)
    assert wrong + errors > 0


# Errors in the middle of a pipeline


def _statement(kind: str, table: str) -> tuple[str, tuple[object, ...], str]:
    sql, params, sqlstate = ERRORS[kind]
    return sql.format(table=table), params, sqlstate


@pytest.mark.parametrize("kind", ERRORS)
@pytest.mark.parametrize("position", ["with_begin", "later_in_transaction"])
def test_error_inside_a_transaction_aborts_it_and_rollback_recovers(
    pooled: DatabaseUrl, taken_key_table: str, kind: str, position: str
) -> None:
    sql, params, sqlstate = _statement(kind, taken_key_table)
    conn = pg_pipeline.connect(**pooled.connect_args())
    cursor = conn.cursor()
    if position == "later_in_transaction":
        select_value(cursor, 1)

    with pytest.raises(DatabaseError) as raised:
        cursor.execute(sql, params)

    assert raised.value.args[0]["C"] == sqlstate
    with pytest.raises(DatabaseError) as aborted:
        cursor.execute("select %s::int", (2,))
    assert aborted.value.args[0]["C"] == "25P02"  # in_failed_sql_transaction
    conn.rollback()
    select_value(cursor, 3)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("kind", ERRORS)
def test_error_outside_a_transaction_leaves_the_connection_idle_and_usable(
    pooled: DatabaseUrl, taken_key_table: str, kind: str
) -> None:
    sql, params, sqlstate = _statement(kind, taken_key_table)
    conn = pg_pipeline.connect(**pooled.connect_args())
    conn.autocommit = True
    cursor = conn.cursor()

    with pytest.raises(DatabaseError) as raised:
        cursor.execute(sql, params)

    assert raised.value.args[0]["C"] == sqlstate
    assert not conn._in_transaction
    select_value(cursor, 4)
    conn.close()


def test_error_in_a_statement_without_parameters_sent_with_begin(pooled: DatabaseUrl) -> None:
    conn = pg_pipeline.connect(**pooled.connect_args())
    cursor = conn.cursor()
    with pytest.raises(DatabaseError) as raised:
        cursor.execute("select 1 / 0")
    assert raised.value.args[0]["C"] == "22012"
    conn.rollback()
    select_value(cursor, 5)
    conn.commit()
    conn.close()


# SQLAlchemy on top: its error handling and type conversion


def test_sqlalchemy_sees_the_unique_violation_and_reuses_the_connection(
    pooled: DatabaseUrl, taken_key_table: str
) -> None:
    engine = make_engine(pooled, pg_pipeline.DRIVERNAME)
    with pytest.raises(sa.exc.DatabaseError) as raised, engine.begin() as connection:
        connection.execute(sa.text(f"insert into {taken_key_table} (id) values (:id)"), {"id": "taken"})

    assert raised.value.orig is not None
    assert raised.value.orig.args[0]["C"] == "23505"
    assert not raised.value.connection_invalidated
    one_request(engine)
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.checkedin() == 1
    engine.dispose()


def test_savepoint_rolled_back_after_an_error_keeps_the_outer_transaction(
    pooled: DatabaseUrl, taken_key_table: str
) -> None:
    engine = make_engine(pooled, pg_pipeline.DRIVERNAME)
    with engine.begin() as connection:
        with pytest.raises(sa.exc.DatabaseError) as raised, connection.begin_nested():
            connection.execute(sa.text(f"insert into {taken_key_table} (id) values (:id)"), {"id": "taken"})
        assert raised.value.orig is not None
        assert raised.value.orig.args[0]["C"] == "23505"
        assert connection.scalar(sa.text("select cast(:v as int)"), {"v": 6}) == 6
    engine.dispose()


def test_sqlalchemy_invalidates_a_connection_whose_server_was_terminated(
    database: DatabaseTarget, pooled: DatabaseUrl
) -> None:
    engine = make_engine(pooled, pg_pipeline.DRIVERNAME)
    admin = pg8000.dbapi.connect(**parse_database_url(database.direct_url).connect_args())
    connection = engine.connect()
    server_pid = connection.scalar(sa.text("select pg_backend_pid()"))
    admin.cursor().execute("select pg_terminate_backend(%s)", (server_pid,))
    admin.commit()
    admin.close()

    with pytest.raises(sa.exc.DBAPIError) as raised:
        connection.scalar(sa.text("select cast(:v as int)"), {"v": 1})
    connection.close()

    assert raised.value.connection_invalidated
    one_request(engine, 8)
    engine.dispose()


ROUND_TRIP_TYPES = sa.Table(
    "pg_pipeline_types",
    sa.MetaData(),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("doc", sa.JSON),
    sa.Column("docb", pg.JSONB),
    sa.Column("id", sa.Uuid),
    sa.Column("amount", sa.Numeric(12, 4)),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("ints", pg.ARRAY(sa.Integer)),
    sa.Column("texts", pg.ARRAY(sa.Text)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def test_types_round_trip_through_sqlalchemy(pooled: DatabaseUrl) -> None:
    engine = make_engine(pooled, pg_pipeline.DRIVERNAME)
    full = {
        "n": 1,
        "text": "zoë ' \" \\ %s :x",
        "at": dt.datetime(2026, 11, 25, 15, 30, 1, 123456, tzinfo=dt.UTC),
        "doc": {"a": [1, 2.5, None, "x"], "b": {"c": True}},
        "docb": {"k": "v", "n": [1, 2]},
        "id": uuid.uuid4(),
        "amount": Decimal("12345678.1234"),
        "blob": bytes(range(256)),
        "ints": [1, -2, 3],
        "texts": ["a", "b c", "", "d,e"],
    }
    empty = {"n": 2} | {column: None for column in full if column != "n"}
    # Temporary and dropped at commit: behind a transaction pooler a table must not outlive its transaction.
    with engine.begin() as connection:
        ROUND_TRIP_TYPES.create(connection)
        connection.execute(ROUND_TRIP_TYPES.insert(), [full, empty])
        rows = connection.execute(sa.select(ROUND_TRIP_TYPES).order_by(ROUND_TRIP_TYPES.c.n)).mappings().all()

    assert [dict(row) for row in rows] == [full, empty]
    engine.dispose()


def test_closing_a_connection_whose_socket_died_closes_its_buffered_stream(pooled: DatabaseUrl) -> None:
    # pg8000 writes Terminate into its buffered stream on close and drops the stream unclosed when the flush fails;
    # Python 3.13 then reports the buffer's failed flush at garbage collection as an unraisable exception.
    conn = pg_pipeline.connect(**pooled.connect_args())
    select_value(conn.cursor(), 1)
    stream = pg8000_internals.stream(conn)
    raw = pg8000_internals.raw_socket(conn)
    assert raw is not None
    raw.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(pg8000.dbapi.InterfaceError):
        conn.close()
    assert stream.closed


class _RecordingSocket(pg_pipeline.FinishedWithStartupSSLSocket):
    """Records, at each wait for the server during the handshake, how many bytes the cork still held back."""

    held_at_waits: ClassVar[list[int]] = []

    def _wait(self, deadline: float | None, *, readable: bool) -> None:
        type(self).held_at_waits.append(self._unsent())
        super()._wait(deadline, readable=readable)


def test_the_handshake_never_waits_for_the_server_while_holding_back_what_it_needs(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL 15 has no X25519, the key share Python sends first: it answers with HelloRetryRequest, and the
    # second ClientHello must leave at once (held back by the cork, it would wait for the kernel's 200 ms ceiling).
    monkeypatch.setattr(pg_pipeline, "FinishedWithStartupSSLSocket", _RecordingSocket)
    monkeypatch.setattr(_RecordingSocket, "held_at_waits", [])
    direct = parse_database_url(database.direct_url)
    conn = pg_pipeline.connect(**direct.connect_args())
    try:
        select_value(conn.cursor(), 3)
    finally:
        conn.close()
    held = _RecordingSocket.held_at_waits
    if database.local_stack:
        assert len(held) >= 2, "expected a HelloRetryRequest from PostgreSQL 15"
    # At most the compatibility ChangeCipherSpec (6 bytes) may wait with the client.
    assert held
    assert max(held) <= 6
