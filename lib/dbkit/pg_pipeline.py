"""pg8000 with fewer round trips: each statement in one flight, BEGIN riding along, no first-connect queries.

Every change keeps the rule that makes pg8000 safe behind a transaction-mode pooler: each Sync either ends a
transaction or arrives while one is open, so the pooler never hands the server to another client mid-statement.
Wire it into SQLAlchemy with ``DRIVERNAME`` (the dialect; importing this module registers it), and either let
the dialect connect or pass a creator that calls ``connect``::

    engine = create_engine(url.set(drivername=pg_pipeline.DRIVERNAME), creator=lambda: pg_pipeline.connect(**kw))
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from typing import Any, Final

import pg8000.dbapi
from pg8000.exceptions import DatabaseError, InterfaceError
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.pg8000 import PGDialect_pg8000
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.engine.interfaces import IsolationLevel

from lib.dbkit import pg8000_internals as internals
from lib.dbkit import transport

DRIVERNAME: Final = "postgresql+pg8000_pipeline"
PING_SQL: Final = "SELECT 1"
# The exact text pg8000's Cursor.execute sends before the first statement of a transaction.
_BEGIN: Final = "begin transaction"
_BEGIN_PREFIX: Final = _BEGIN + ";\n"


class PipelinedConnection(pg8000.dbapi.Connection):  # type: ignore[misc]
    """pg8000's DB-API connection, with each statement sent as one flight and BEGIN sent along with the first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._begin_pending = False
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        # pg8000 writes Terminate into its buffered stream and, when the flush fails (a dead connection), drops the
        # stream unclosed; Python 3.13 reports that buffer's failed flush at garbage collection as an unraisable
        # exception. Close the stream, whatever pg8000's close did.
        stream = internals.stream(self)
        try:
            super().close()
        finally:
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()

    def execute_simple(self, statement: str) -> Any:
        if statement == _BEGIN and not internals.in_transaction(self):
            # Cursor.execute asks for BEGIN right before its statement: hold it back so both share one flight.
            self._begin_pending = True
            return internals.new_context(statement)
        if not self._begin_pending:
            return super().execute_simple(statement)
        # One Query, not two: if BEGIN ever failed, a second Query would still run, in its own implicit
        # transaction, i.e. autocommitted. In one Query a parse error runs nothing, and a run-time error
        # leaves the transaction open and aborted, as pg8000's own two round trips would.
        context = internals.new_context(statement)
        self._send_flight(lambda: self.send_QUERY(_BEGIN_PREFIX + statement))
        try:
            self.handle_messages(context)
        except DatabaseError as error:
            _unshift_error_position(error, len(_BEGIN_PREFIX))
            raise
        return context

    def execute_unnamed(self, statement: str, vals: Any = (), oids: Any = (), stream: Any = None) -> Any:
        if stream is not None:
            # COPY goes back and forth mid-statement, so it keeps pg8000's path (inside a transaction: safe).
            self._send_pending_begin()
            return super().execute_unnamed(statement, vals=vals, oids=oids, stream=stream)
        # pg8000 splits this over three Syncs, each one a round trip and, outside a transaction, a point where
        # the pooler may hand the server to another client between Parse and Execute. One Sync is one
        # (implicit) transaction. BEGIN goes as extended messages before it: if BEGIN failed, the server
        # skips everything up to the Sync, so the statement can never run outside the transaction.
        params = internals.make_params(self, vals)
        begin = self._begin_pending

        def compose() -> None:
            if begin:
                self.send_PARSE(internals.NULL_BYTE, _BEGIN, ())
                self.send_BIND(internals.NULL_BYTE, ())
                self.send_EXECUTE()
            self.send_PARSE(internals.NULL_BYTE, statement, oids)
            self.send_DESCRIBE_STATEMENT(internals.NULL_BYTE)
            self.send_BIND(internals.NULL_BYTE, params)
            self.send_EXECUTE()
            internals.write(internals.stream(self), internals.sync_message())

        context = internals.new_context(statement)
        self._send_flight(compose)
        self.handle_messages(context)
        return context

    def commit(self) -> None:
        # pg8000 commits through execute_unnamed (three round trips), even with no transaction open.
        self._begin_pending = False
        if internals.in_transaction(self):
            self.execute_simple("commit")

    def rollback(self) -> None:
        self._begin_pending = False
        if internals.in_transaction(self):
            self.execute_simple("rollback")

    def _send_pending_begin(self) -> None:
        if self._begin_pending:
            super().execute_simple(_BEGIN)
            self._begin_pending = False

    def _send_flight(self, compose: Callable[[], None]) -> None:
        """Write what ``compose`` sends with one flush; if composing fails, nothing reaches the socket."""
        if internals.stream(self) is None:
            raise InterfaceError("connection is closed")
        # pg8000's send_* write straight to its stream; pointing it at a buffer keeps a half-composed flight
        # (a value that fails to encode) from being sent ahead of the next statement.
        buffer = io.BytesIO()
        sock = internals.swap_stream(self, buffer)
        try:
            compose()
        finally:
            internals.swap_stream(self, sock)
        self._begin_pending = False
        internals.write(sock, buffer.getvalue())
        internals.flush(sock)


def _unshift_error_position(error: DatabaseError, prefix_length: int) -> None:
    """Make an error's statement position count from the caller's statement, not the BEGIN prefix."""
    fields = error.args[0] if error.args else None
    if isinstance(fields, dict) and str(fields.get("P", "")).isdigit():
        fields["P"] = str(max(1, int(fields["P"]) - prefix_length))


def connect(**kwargs: Any) -> PipelinedConnection:
    """``pg8000.dbapi.connect`` (same keyword arguments) returning a PipelinedConnection over a TCP_NODELAY socket.

    ``hostaddr`` and ``sslnegotiation`` are understood too (lib.dbkit.transport).
    """
    return transport.connect(PipelinedConnection, **kwargs)


def ping(connection: pg8000.dbapi.Connection) -> None:
    """Check a connection is alive in one round trip, without opening a transaction."""
    # A simple Query outside a transaction is its own implicit transaction: safe behind the pooler, and it
    # leaves the connection idle, where pg8000's cursor would send BEGIN first and keep a transaction open.
    internals.execute_simple_unpipelined(connection, PING_SQL)


def parse_server_version(reported: str) -> tuple[int, ...] | None:
    """Version tuple from the ``server_version`` parameter, as SQLAlchemy derives it from ``version()``."""
    match = re.match(r"(\d+)\.?(\d+)?(?:\.(\d+))?", reported)
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def _parameter_status(connection: SAConnection, name: str) -> str | None:
    statuses = getattr(connection.connection.dbapi_connection, "parameter_statuses", {})
    value = statuses.get(name)
    return value if isinstance(value, str) else None


class PipelineDialect(PGDialect_pg8000):
    """SQLAlchemy's pg8000 dialect on PipelinedConnection, initialised from what the server reported at startup."""

    supports_statement_cache = True

    def __init__(self, *, default_schema: str = "public", **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._assumed_default_schema = default_schema

    def connect(self, *cargs: Any, **cparams: Any) -> PipelinedConnection:
        if cargs:
            raise TypeError("pg8000 connections take keyword arguments only")
        return connect(**cparams)

    # The stock first connect runs BEGIN, four queries and a three-round-trip ROLLBACK: 8 per new engine.
    # Postgres already sent server_version and standard_conforming_strings as ParameterStatus at startup
    # (PgBouncer passes them on); the other two have no such source and get Postgres' defaults.

    def _get_server_version_info(self, connection: SAConnection) -> tuple[int, ...]:
        reported = _parameter_status(connection, "server_version")
        parsed = parse_server_version(reported) if reported else None
        return parsed or super()._get_server_version_info(connection)  # type: ignore[no-untyped-call]

    def _set_backslash_escapes(self, connection: SAConnection) -> None:
        reported = _parameter_status(connection, "standard_conforming_strings")
        if reported is None:
            super()._set_backslash_escapes(connection)  # type: ignore[no-untyped-call]
        else:
            self._backslash_escapes = reported == "off"

    def _get_default_schema_name(self, connection: SAConnection) -> str:
        # What current_schema() returns unless search_path or a schema named after the role says otherwise;
        # then pass create_engine(..., default_schema=...).
        return self._assumed_default_schema

    def get_default_isolation_level(self, dbapi_conn: Any) -> IsolationLevel:
        # Only used to restore a connection after execution_options(isolation_level=...), a session setting
        # that must not be used behind the pooler anyway (set it per transaction instead).
        return "READ COMMITTED"

    def do_ping(self, dbapi_connection: Any) -> bool:
        ping(dbapi_connection)
        return True


registry.register(DRIVERNAME.replace("+", "."), __name__, PipelineDialect.__name__)
