"""lib.dbkit.pg_pipeline against a scripted server: what goes into each flight, and the state errors leave behind."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import sqlalchemy as sa
from pg8000.dbapi import DatabaseError, DataError, IntegrityError, InterfaceError, ProgrammingError
from sqlalchemy.pool import NullPool

from lib.dbkit import pg_pipeline
from lib.dbkit.errors import SingleStatementError, UnitOfWorkError

INT4 = 23
TEXT = 25
STARTUP_STATUSES = {
    "server_version": "15.18 (Debian 15.18-0+deb12u1)",
    "standard_conforming_strings": "on",
    "client_encoding": "UTF8",
}
# No Flush ("H") between messages: pg8000 sends one after each, which only makes the server answer in pieces.
BEGIN_THEN_STATEMENT = ["P", "B", "E", "P", "D", "B", "E", "S"]
STATEMENT = BEGIN_THEN_STATEMENT[3:]


def message(code: bytes, payload: bytes = b"") -> bytes:
    return code + struct.pack("!i", len(payload) + 4) + payload


def ready(status: bytes) -> bytes:
    return message(b"Z", status)


def command_complete(tag: str) -> bytes:
    return message(b"C", tag.encode() + b"\x00")


def error_response(sqlstate: str, text: str = "scripted error", position: int | None = None) -> bytes:
    fields = {"S": "ERROR", "V": "ERROR", "C": sqlstate, "M": text}
    if position is not None:
        fields["P"] = str(position)
    return message(b"E", b"".join(k.encode() + v.encode() + b"\x00" for k, v in fields.items()) + b"\x00")


def row_description(*columns: tuple[str, int]) -> bytes:
    described = b"".join(
        name.encode() + b"\x00" + struct.pack("!ihihih", 0, 0, type_oid, -1, -1, 0) for name, type_oid in columns
    )
    return message(b"T", struct.pack("!H", len(columns)) + described)


def data_row(*values: bytes) -> bytes:
    return message(b"D", struct.pack("!H", len(values)) + b"".join(struct.pack("!i", len(v)) + v for v in values))


def server_defaults_reply(schema: bytes = b"public", isolation: bytes = b"read committed") -> bytes:
    """The reply to the one query the pipelined dialect's first connect sends (default schema, isolation level)."""
    return (
        row_description(("current_schema", TEXT), ("current_setting", TEXT))
        + data_row(schema, isolation)
        + command_complete("SELECT 1")
        + ready(b"I")
    )


def startup_reply(statuses: dict[str, str]) -> bytes:
    return (
        message(b"R", struct.pack("!i", 0))
        + b"".join(message(b"S", k.encode() + b"\x00" + v.encode() + b"\x00") for k, v in statuses.items())
        + message(b"K", struct.pack("!ii", 1, 2))
        + ready(b"I")
    )


BEGIN_REPLY = message(b"1") + message(b"2") + command_complete("BEGIN")


def select_reply(value: int, *, begin: bool, status: bytes = b"T") -> bytes:
    """Server side of one parameterised SELECT returning ``value`` as int4."""
    return (
        (BEGIN_REPLY if begin else b"")
        + message(b"1")
        + message(b"t", struct.pack("!Hi", 1, INT4))
        + row_description(("v", INT4))
        + message(b"2")
        + data_row(str(value).encode())
        + command_complete("SELECT 1")
        + ready(status)
    )


def message_types(flight: bytes) -> list[str]:
    types, at = [], 0
    while at < len(flight):
        types.append(flight[at : at + 1].decode())
        at += 1 + struct.unpack_from("!i", flight, at + 1)[0]
    return types


class ScriptedServer:
    """Both pg8000's socket and its file: records each flight and answers it with the next scripted reply."""

    def __init__(self, statuses: dict[str, str] | None = None) -> None:
        self.flights: list[bytes] = []
        self.replies: list[bytes] = [startup_reply(STARTUP_STATUSES if statuses is None else statuses)]
        self._unflushed = bytearray()
        self._sent = bytearray()
        self._incoming = bytearray()

    def makefile(self, mode: str) -> ScriptedServer:
        return self

    def close(self) -> None:
        pass

    def write(self, data: bytes) -> int:
        self._unflushed += data
        return len(data)

    def flush(self) -> None:
        self._sent += self._unflushed
        self._unflushed.clear()

    def read(self, size: int) -> bytes:
        if not self._incoming:
            assert self._sent, "client waits for a reply without having sent anything"
            self.flights.append(bytes(self._sent))
            self._sent.clear()
            assert self.replies, f"unexpected round trip: {message_types(self.flights[-1])}"
            self._incoming += self.replies.pop(0)
        chunk = bytes(self._incoming[:size])
        del self._incoming[:size]
        return chunk

    def reply(self, *replies: bytes) -> None:
        self.replies.extend(replies)

    def last_flight_types(self) -> list[str]:
        return message_types(self.flights[-1])


@pytest.fixture
def server() -> ScriptedServer:
    return ScriptedServer()


@pytest.fixture
def conn(server: ScriptedServer) -> Any:
    connection = pg_pipeline.connect(user="app", sock=server, ssl_context=False)
    assert len(server.flights) == 1  # the startup message
    return connection


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("15.18 (Debian 15.18-0+deb12u1)", (15, 18)),
        ("16.4", (16, 4)),
        ("9.6.24", (9, 6, 24)),
        ("17beta1", (17,)),
        ("unknown", None),
    ],
)
def test_server_version_parses_like_sqlalchemy(reported: str, expected: tuple[int, ...] | None) -> None:
    assert pg_pipeline.parse_server_version(reported) == expected


def test_first_statement_of_a_transaction_goes_with_begin_in_one_flight_with_one_sync(
    server: ScriptedServer, conn: Any
) -> None:
    server.reply(select_reply(7, begin=True))
    cursor = conn.cursor()
    cursor.execute("select %s::int as v", (7,))

    assert cursor.fetchall() == ([7],)
    assert len(server.flights) == 2
    assert server.last_flight_types() == BEGIN_THEN_STATEMENT
    assert b"begin transaction\x00" in server.flights[-1]
    assert conn._in_transaction


def test_later_statement_is_one_flight_without_begin(server: ScriptedServer, conn: Any) -> None:
    server.reply(select_reply(1, begin=True), select_reply(2, begin=False))
    cursor = conn.cursor()
    cursor.execute("select %s::int as v", (1,))
    cursor.execute("select %s::int as v", (2,))

    assert cursor.fetchall() == ([2],)
    assert len(server.flights) == 3
    assert server.last_flight_types() == STATEMENT


def test_statement_without_parameters_carries_begin_in_the_same_query(server: ScriptedServer, conn: Any) -> None:
    server.reply(
        command_complete("BEGIN")
        + row_description(("n", INT4))
        + data_row(b"1")
        + command_complete("SELECT 1")
        + ready(b"T")
    )
    cursor = conn.cursor()
    cursor.execute("select 1 as n")

    assert cursor.fetchall() == ([1],)
    assert server.last_flight_types() == ["Q"]
    assert server.flights[-1][5:] == b"begin transaction;\nselect 1 as n\x00"


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_commit_and_rollback_are_one_simple_query(server: ScriptedServer, conn: Any, end: str) -> None:
    server.reply(select_reply(1, begin=True), command_complete(end.upper()) + ready(b"I"))
    conn.cursor().execute("select %s::int as v", (1,))
    getattr(conn, end)()

    assert len(server.flights) == 3
    assert server.flights[-1] == message(b"Q", end.encode() + b"\x00")
    assert not conn._in_transaction


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_commit_and_rollback_outside_a_transaction_send_nothing(server: ScriptedServer, conn: Any, end: str) -> None:
    getattr(conn, end)()
    assert len(server.flights) == 1


def test_ping_is_one_query_that_opens_no_transaction(server: ScriptedServer, conn: Any) -> None:
    server.reply(row_description(("?column?", INT4)) + data_row(b"1") + command_complete("SELECT 1") + ready(b"I"))
    pg_pipeline.ping(conn)

    assert server.flights[-1] == message(b"Q", b"SELECT 1\x00")
    assert not conn._in_transaction


def test_autocommit_statement_is_one_sync_without_begin(server: ScriptedServer, conn: Any) -> None:
    conn.autocommit = True
    server.reply(select_reply(3, begin=False, status=b"I"))
    cursor = conn.cursor()
    cursor.execute("select %s::int as v", (3,))

    assert cursor.fetchall() == ([3],)
    assert server.last_flight_types() == STATEMENT


def test_statement_error_after_begin_leaves_an_aborted_transaction_that_rollback_ends(
    server: ScriptedServer, conn: Any
) -> None:
    server.reply(BEGIN_REPLY + error_response("42601") + ready(b"E"))
    cursor = conn.cursor()
    with pytest.raises(DatabaseError) as raised:
        cursor.execute("selec %s", (1,))

    assert raised.value.args[0]["C"] == "42601"
    assert conn._transaction_status == b"E"
    server.reply(command_complete("ROLLBACK") + ready(b"I"), select_reply(5, begin=True))
    conn.rollback()
    cursor.execute("select %s::int as v", (5,))
    assert cursor.fetchall() == ([5],)
    assert [message_types(f) for f in server.flights[2:]] == [["Q"], BEGIN_THEN_STATEMENT]


def test_unique_violation_after_begin_surfaces_with_its_sqlstate(server: ScriptedServer, conn: Any) -> None:
    server.reply(BEGIN_REPLY + message(b"1") + message(b"n") + message(b"2") + error_response("23505") + ready(b"E"))
    with pytest.raises(DatabaseError) as raised:
        conn.cursor().execute("insert into t values (%s)", (1,))
    assert raised.value.args[0]["C"] == "23505"
    assert conn._transaction_status == b"E"


def test_failed_begin_skips_the_statement_and_leaves_no_transaction(server: ScriptedServer, conn: Any) -> None:
    # The server discards everything after an error up to the Sync: the statement never runs on its own.
    server.reply(error_response("53300", "too many connections") + ready(b"I"))
    cursor = conn.cursor()
    with pytest.raises(DatabaseError) as raised:
        cursor.execute("select %s::int as v", (1,))

    assert raised.value.args[0]["C"] == "53300"
    assert not conn._in_transaction
    conn.rollback()
    server.reply(select_reply(1, begin=True))
    cursor.execute("select %s::int as v", (1,))
    assert len(server.flights) == 3
    assert server.last_flight_types() == BEGIN_THEN_STATEMENT


def test_value_that_cannot_be_encoded_sends_nothing(server: ScriptedServer, conn: Any) -> None:
    cursor = conn.cursor()
    with pytest.raises(UnicodeEncodeError):
        cursor.execute("select %s::text", ("\ud800",))

    assert len(server.flights) == 1
    server.reply(select_reply(9, begin=True))
    cursor.execute("select %s::int as v", (9,))
    assert cursor.fetchall() == ([9],)
    assert server.last_flight_types() == BEGIN_THEN_STATEMENT


def test_error_position_counts_from_the_callers_statement(server: ScriptedServer, conn: Any) -> None:
    prefix = len("begin transaction;\n")
    server.reply(command_complete("BEGIN") + error_response("42601", position=prefix + 10) + ready(b"E"))
    with pytest.raises(DatabaseError) as raised:
        conn.cursor().execute("select 1 frm x")
    assert raised.value.args[0]["P"] == "10"


def _engine(server: ScriptedServer, **options: Any) -> sa.Engine:
    return sa.create_engine(
        f"{pg_pipeline.DRIVERNAME}://app@/neondb",
        connect_args={"sock": server, "ssl_context": False},
        poolclass=NullPool,
        **options,
    )


def test_new_engine_initialises_from_startup_parameters_without_queries(server: ScriptedServer) -> None:
    engine = _engine(server, ask_server_defaults=False)
    server.reply(select_reply(4, begin=True), command_complete("COMMIT") + ready(b"I"))
    with engine.begin() as connection:
        assert connection.scalar(sa.text("select cast(:x as int) as v"), {"x": 4}) == 4
        assert isinstance(connection.connection.dbapi_connection, pg_pipeline.PipelinedConnection)

    assert [message_types(f) for f in server.flights[1:]] == [BEGIN_THEN_STATEMENT, ["Q"]]
    dialect = engine.dialect
    assert isinstance(dialect, pg_pipeline.PipelineDialect)
    assert dialect.server_version_info == (15, 18)
    assert dialect.default_schema_name == "public"
    assert dialect.default_isolation_level == "READ COMMITTED"
    assert dialect._backslash_escapes is False


def test_new_engine_learns_default_schema_and_isolation_in_one_simple_query(server: ScriptedServer) -> None:
    engine = _engine(server)
    server.reply(
        server_defaults_reply(b"tenant_a", b"repeatable read"),
        select_reply(4, begin=True),
        command_complete("COMMIT") + ready(b"I"),
    )
    with engine.begin() as connection:
        assert connection.scalar(sa.text("select cast(:x as int) as v"), {"x": 4}) == 4

    assert server.flights[1] == message(b"Q", pg_pipeline.SERVER_DEFAULTS_SQL.encode() + b"\x00")
    assert [message_types(f) for f in server.flights[2:]] == [BEGIN_THEN_STATEMENT, ["Q"]]
    assert engine.dialect.default_schema_name == "tenant_a"
    assert engine.dialect.default_isolation_level == "REPEATABLE READ"


def test_dialect_asks_the_server_when_startup_parameters_are_missing() -> None:
    server = ScriptedServer(statuses={"client_encoding": "UTF8"})
    engine = _engine(server)
    version = b"PostgreSQL 14.2 on x86_64-pc-linux-gnu"
    server.reply(
        server_defaults_reply(),
        command_complete("BEGIN")
        + row_description(("version", TEXT))
        + data_row(version)
        + command_complete("SELECT 1")
        + ready(b"T"),
        row_description(("standard_conforming_strings", TEXT))
        + data_row(b"off")
        + command_complete("SHOW")
        + ready(b"T"),
        command_complete("ROLLBACK") + ready(b"I"),
    )
    with engine.connect():
        pass

    dialect = engine.dialect
    assert isinstance(dialect, pg_pipeline.PipelineDialect)
    assert dialect.server_version_info == (14, 2)
    assert dialect._backslash_escapes is True
    assert server.replies == []


def test_engine_ping_is_one_query() -> None:
    server = ScriptedServer()
    engine = _engine(server, ask_server_defaults=False)
    with engine.connect() as connection:
        server.reply(row_description(("?column?", INT4)) + data_row(b"1") + command_complete("SELECT 1") + ready(b"I"))
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        assert engine.dialect.do_ping(dbapi_connection)
    assert server.flights[-1] == message(b"Q", b"SELECT 1\x00")


LIMITS = pg_pipeline.ServerLimits(statement_ms=1500, lock_ms=1200, idle_in_transaction_ms=1800)
SET_CONFIG_REPLY = message(b"1") + message(b"2") + command_complete("SELECT 0")
SET_LOCAL_REPLY = message(b"1") + message(b"2") + command_complete("SET")


def parsed_statements(flight: bytes) -> list[str]:
    """The SQL of every Parse message of a flight, in order."""
    statements, at = [], 0
    while at < len(flight):
        length = struct.unpack_from("!i", flight, at + 1)[0]
        if flight[at : at + 1] == b"P":
            body = flight[at + 5 : at + 1 + length]
            statements.append(body[1 : body.index(b"\x00", 1)].decode())
        at += 1 + length
    return statements


def test_single_statement_is_one_flight_with_its_limits_and_no_begin_or_commit(
    server: ScriptedServer, conn: Any
) -> None:
    conn.server_limits = lambda: LIMITS
    conn.begin_unit(single_statement=True)
    server.reply(SET_CONFIG_REPLY + select_reply(7, begin=False, status=b"I"))
    cursor = conn.cursor()
    cursor.execute("select %s::int as v", (7,))
    conn.commit()

    assert cursor.fetchall() == ([7],)
    assert cursor.rowcount == 1
    assert len(server.flights) == 2
    assert server.last_flight_types() == ["P", "B", "E", *STATEMENT]
    limits_sql, statement = parsed_statements(server.flights[-1])
    assert "set_config('statement_timeout', '1500', true)" in limits_sql
    assert "set_config('lock_timeout', '1200', true)" in limits_sql
    assert "set_config('idle_in_transaction_session_timeout', '1800', true)" in limits_sql
    assert "begin" not in limits_sql.lower()
    assert statement == "select $1::int as v"
    assert not conn._in_transaction
    assert conn.flights_sent == 1


def test_transaction_limits_ride_with_begin_as_set_local(server: ScriptedServer, conn: Any) -> None:
    conn.server_limits = lambda: LIMITS
    conn.begin_unit(read_only=True)
    server.reply(BEGIN_REPLY + SET_LOCAL_REPLY * 4 + select_reply(3, begin=False))
    cursor = conn.cursor()
    cursor.execute("select %s::int as v", (3,))

    assert cursor.fetchall() == ([3],)
    assert len(server.flights) == 2
    assert parsed_statements(server.flights[-1]) == [
        "begin transaction",
        "SET LOCAL statement_timeout = 1500",
        "SET LOCAL lock_timeout = 1200",
        "SET LOCAL idle_in_transaction_session_timeout = 1800",
        "SET LOCAL transaction_read_only = on",
        "select $1::int as v",
    ]
    assert server.last_flight_types()[-1] == "S"


def test_single_statement_without_parameters_sets_limits_in_the_same_query(server: ScriptedServer, conn: Any) -> None:
    conn.server_limits = lambda: LIMITS
    conn.begin_unit(single_statement=True)
    server.reply(
        command_complete("SET") * 3
        + row_description(("n", INT4))
        + data_row(b"1")
        + command_complete("SELECT 1")
        + ready(b"I")
    )
    cursor = conn.cursor()
    cursor.execute("select 1 as n")

    assert cursor.fetchall() == ([1],)
    assert server.last_flight_types() == ["Q"]
    assert server.flights[-1][5:] == (
        b"SET LOCAL statement_timeout = 1500;\nSET LOCAL lock_timeout = 1200;\n"
        b"SET LOCAL idle_in_transaction_session_timeout = 1800;\nselect 1 as n\x00"
    )


def test_a_second_statement_of_a_single_statement_unit_is_refused_before_it_is_written(
    server: ScriptedServer, conn: Any
) -> None:
    conn.begin_unit(single_statement=True)
    server.reply(select_reply(1, begin=False, status=b"I"))
    conn.cursor().execute("select %s::int as v", (1,))
    # The first statement committed at its Sync: a second would be a transaction of its own. Neither path sends it.
    with pytest.raises(SingleStatementError, match="refused a second statement"):
        conn.cursor().execute("select %s::int as v", (2,))
    with pytest.raises(SingleStatementError, match="refused a second statement"):
        conn.cursor().execute("select 2")
    assert len(server.flights) == 2
    # The next unit may send its own statement.
    conn.end_unit()
    conn.begin_unit(single_statement=True)
    server.reply(select_reply(3, begin=False, status=b"I"))
    cursor = conn.cursor()
    cursor.execute("select %s::int as v", (3,))
    assert cursor.fetchall() == ([3],)
    assert len(server.flights) == 3


def test_statements_of_an_ordinary_unit_are_not_counted(server: ScriptedServer, conn: Any) -> None:
    conn.begin_unit()
    server.reply(select_reply(1, begin=True))
    conn.cursor().execute("select %s::int as v", (1,))
    server.reply(select_reply(2, begin=False))
    cursor = conn.cursor()
    cursor.execute("select %s::int as v", (2,))
    assert cursor.fetchall() == ([2],)


def update_reply(rows: int, *, guard: bool, commit: bool, status: bytes) -> bytes:
    """Server side of a flight: the guard (a DO block), an UPDATE without RETURNING, and COMMIT."""
    guard_reply = message(b"1") + message(b"2") + command_complete("DO") if guard else b""
    statement = message(b"1") + message(b"t", struct.pack("!H", 0)) + message(b"n") + message(b"2")
    commit_reply = message(b"1") + message(b"2") + command_complete("COMMIT") if commit else b""
    return guard_reply + statement + command_complete(f"UPDATE {rows}") + commit_reply + ready(status)


def test_commit_rides_with_the_last_statement_behind_a_guard(server: ScriptedServer, conn: Any) -> None:
    conn.begin_unit()
    server.reply(select_reply(1, begin=True))
    conn.cursor().execute("select %s::int as v", (1,))
    conn.commit_with_next_statement("UPDATE t ")
    server.reply(update_reply(1, guard=True, commit=True, status=b"I"))
    cursor = conn.cursor()
    cursor.execute("UPDATE t SET v = %s WHERE id = %s", (2, 1))

    assert cursor.rowcount == 1
    assert server.last_flight_types() == ["P", "B", "E", *STATEMENT[:-1], "P", "B", "E", "S"]
    guard, statement, commit = parsed_statements(server.flights[-1])
    assert "pg_current_xact_id_if_assigned() IS NOT NULL" in guard
    assert pg_pipeline.COMMIT_GUARD_SQLSTATE in guard
    assert (statement, commit) == ("UPDATE t SET v = $1 WHERE id = $2", "COMMIT")
    assert conn.unit_committed
    assert not conn._in_transaction
    # The unit's transaction is over: COMMIT sends nothing, and another statement is refused unsent.
    conn.commit()
    with pytest.raises(UnitOfWorkError, match="refused a statement after it"):
        conn.cursor().execute("select %s::int as v", (3,))
    assert len(server.flights) == 3


def test_the_first_statement_carries_begin_and_commit_without_a_guard(server: ScriptedServer, conn: Any) -> None:
    conn.begin_unit()
    conn.commit_with_next_statement("UPDATE t ")
    server.reply(BEGIN_REPLY + update_reply(1, guard=False, commit=True, status=b"I"))
    conn.cursor().execute("UPDATE t SET v = %s WHERE id = %s", (2, 1))
    assert parsed_statements(server.flights[-1]) == ["begin transaction", "UPDATE t SET v = $1 WHERE id = $2", "COMMIT"]


def test_commit_does_not_ride_with_another_statement(server: ScriptedServer, conn: Any) -> None:
    conn.begin_unit()
    server.reply(select_reply(1, begin=True))
    conn.cursor().execute("select %s::int as v", (1,))
    conn.commit_with_next_statement("UPDATE t ")
    server.reply(select_reply(2, begin=False))
    conn.cursor().execute("select %s::int as v", (2,))
    assert parsed_statements(server.flights[-1]) == ["select $1::int as v"]
    # Armed for the next statement only: a matching one after it goes as usual, and COMMIT on its own.
    server.reply(update_reply(1, guard=False, commit=False, status=b"T"))
    conn.cursor().execute("UPDATE t SET v = %s WHERE id = %s", (2, 1))
    assert parsed_statements(server.flights[-1]) == ["UPDATE t SET v = $1 WHERE id = $2"]
    assert not conn.unit_committed
    server.reply(command_complete("COMMIT") + ready(b"I"))
    conn.commit()
    assert server.last_flight_types() == ["Q"]


def test_a_failed_statement_takes_its_riding_commit_with_it(server: ScriptedServer, conn: Any) -> None:
    conn.begin_unit()
    server.reply(select_reply(1, begin=True))
    conn.cursor().execute("select %s::int as v", (1,))
    conn.commit_with_next_statement("UPDATE t ")
    # The server skips everything up to the Sync after an error: no COMMIT, the transaction is left failed.
    server.reply(message(b"1") + message(b"2") + command_complete("DO") + error_response("23505") + ready(b"E"))
    with pytest.raises(DatabaseError):
        conn.cursor().execute("UPDATE t SET v = %s WHERE id = %s", (2, 1))
    assert conn._in_transaction
    server.reply(command_complete("ROLLBACK") + ready(b"I"))
    conn.rollback()
    assert server.flights[-1][5:] == b"rollback\x00"


def test_end_of_unit_brings_back_begin(server: ScriptedServer, conn: Any) -> None:
    conn.begin_unit(single_statement=True)
    conn.end_unit()
    server.reply(select_reply(1, begin=True))
    conn.cursor().execute("select %s::int as v", (1,))
    assert server.last_flight_types() == BEGIN_THEN_STATEMENT


def test_copy_is_refused_outside_a_transaction(server: ScriptedServer, conn: Any) -> None:
    conn.begin_unit(single_statement=True)
    with pytest.raises(InterfaceError, match="COPY needs a transaction"):
        conn.cursor().execute("copy t from stdin", stream=object())
    assert len(server.flights) == 1


def test_read_only_is_set_even_without_limits(server: ScriptedServer, conn: Any) -> None:
    conn.begin_unit(single_statement=True, read_only=True)
    server.reply(SET_CONFIG_REPLY + select_reply(2, begin=False, status=b"I"))
    conn.cursor().execute("select %s::int as v", (2,))
    assert parsed_statements(server.flights[-1])[0] == (
        "SELECT WHERE concat(set_config('transaction_read_only', 'on', true)) IS NULL"
    )


def test_a_statement_that_fails_to_parse_leaves_the_transaction_failed_as_pg8000_does(
    server: ScriptedServer, conn: Any
) -> None:
    # The server parses a Query's whole text first: BEGIN did not run, the connection is idle.
    server.reply(error_response("42601") + ready(b"I"))
    # BEGIN alone, then the statement alone again: the transaction is open and failed, as after pg8000's own BEGIN.
    server.reply(command_complete("BEGIN") + ready(b"T") + error_response("42601", position=1) + ready(b"E"))
    with pytest.raises(ProgrammingError) as raised:
        conn.cursor().execute("SELEC 1")

    assert raised.value.args[0]["C"] == "42601"
    assert raised.value.args[0]["P"] == "1"
    assert server.flights[-1] == message(b"Q", b"begin transaction;\n\x00") + message(b"Q", b"SELEC 1\x00")
    assert conn._in_transaction


def test_commit_on_a_closed_connection_raises_as_pep_249_asks(server: ScriptedServer, conn: Any) -> None:
    conn.close()
    with pytest.raises(InterfaceError, match="connection is closed"):
        conn.commit()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("23505", IntegrityError),
        ("23503", IntegrityError),
        ("23502", IntegrityError),
        ("23514", IntegrityError),
        ("22012", DataError),
        ("22P02", DataError),
        ("42P01", ProgrammingError),
        ("57014", ProgrammingError),
        ("40001", ProgrammingError),
    ],
)
def test_server_errors_carry_the_db_api_class_of_their_sqlstate(
    server: ScriptedServer, conn: Any, code: str, expected: type[Exception]
) -> None:
    server.reply(BEGIN_REPLY + message(b"1") + error_response(code) + ready(b"E"))
    with pytest.raises(expected) as raised:
        conn.cursor().execute("select %s::int", (1,))
    assert type(raised.value) is expected
    # The kit classifies by SQLSTATE: the fields survive the change of class.
    assert raised.value.args[0]["C"] == code


def test_a_deferred_constraint_failing_at_commit_is_an_integrity_error(server: ScriptedServer, conn: Any) -> None:
    server.reply(select_reply(1, begin=True), error_response("23503") + ready(b"I"))
    conn.cursor().execute("select %s::int as v", (1,))
    with pytest.raises(IntegrityError):
        conn.commit()
