"""pg8000 with fewer round trips: each statement in one flight, BEGIN riding along, no first-connect queries.

Every change keeps the rule that makes pg8000 safe behind a transaction-mode pooler: each Sync either ends a
transaction or arrives while one is open, so the pooler never hands the server to another client mid-statement.
Wire it into SQLAlchemy with ``DRIVERNAME`` (the dialect; importing this module registers it), and either let
the dialect connect or pass a creator that calls ``connect``::

    engine = create_engine(url.set(drivername=pg_pipeline.DRIVERNAME), creator=lambda: pg_pipeline.connect(**kw))
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import re
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import pg8000.dbapi
from pg8000.exceptions import DatabaseError, InterfaceError
from sqlalchemy.dialects import registry
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.engine.interfaces import IsolationLevel

from lib.dbkit import pg8000_internals as internals
from lib.dbkit import pg_dbapi, transport
from lib.dbkit.errors import SingleStatementError, UnitOfWorkError
from lib.dbkit.replica import COMMIT_LSN_SQL

DRIVERNAME: Final = "postgresql+pg8000_pipeline"
PING_SQL: Final = "SELECT 1"
# The exact text pg8000's Cursor.execute sends before the first statement of a transaction.
_BEGIN: Final = "begin transaction"
_BEGIN_PREFIX: Final = _BEGIN + ";\n"
# Sent ahead of a statement that carries its transaction's COMMIT, when statements ran before it: an error (so the
# server skips the statement and the COMMIT, and nothing is committed) if any of them wrote. Postgres assigns a
# transaction id at a transaction's first write (or row lock), never for reads.
COMMIT_GUARD_SQLSTATE: Final = "DBK01"
_COMMIT_GUARD: Final = (
    "DO $$BEGIN IF pg_current_xact_id_if_assigned() IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = 'DBK01', "
    "MESSAGE = 'the unit wrote before its last statement, so COMMIT does not ride with it: nothing committed'; "
    "END IF; END$$"
)


@dataclass(frozen=True)
class ServerLimits:
    """Time limits the server enforces for one transaction (milliseconds), set transaction-locally."""

    statement_ms: int
    lock_ms: int
    idle_in_transaction_ms: int

    def settings(self) -> list[tuple[str, str]]:
        """(parameter, value) pairs, values in milliseconds as the server reads them."""
        return [
            ("statement_timeout", str(self.statement_ms)),
            ("lock_timeout", str(self.lock_ms)),
            ("idle_in_transaction_session_timeout", str(self.idle_in_transaction_ms)),
        ]

    def set_local_sql(self, *, read_only: bool = False) -> str:
        """SET LOCAL statements for a transaction block (the stock driver sends them after its BEGIN)."""
        pairs = [*self.settings(), ("transaction_read_only", "on")] if read_only else self.settings()
        return "".join(f"SET LOCAL {name} = {value};\n" for name, value in pairs)


def _no_limits() -> ServerLimits | None:
    return None


class _FlightBuffer(io.BytesIO):
    """Collects one flight; drops pg8000's Flush after each message, which only makes the server send early."""

    def write(self, data: Any) -> int:
        if bytes(data) == internals.flush_message():
            return len(data)
        return super().write(data)


class PipelinedConnection(pg_dbapi.Connection):
    """pg8000's DB-API connection, with each statement sent as one flight and BEGIN sent along with the first.

    ``server_limits`` (a callable, set by the engine) gives the limits that ride in the flight that starts each
    transaction. Between ``begin_unit(single_statement=True)`` and ``end_unit()`` no BEGIN is sent: the unit's
    statement is one flight with one Sync, its own implicit transaction, committed by the server at the Sync; a
    second statement would be a second transaction, so it is refused (SingleStatementError) before it is written.
    ``commit_with_next_statement(prefix)`` sends COMMIT in the flight of the unit's last statement (see there).
    Once a flight that commits was written, ``unit_committed`` is True and no further statement of the unit is sent.
    A unit's ``guard`` (lib.dbkit.replica: the read replica's staleness check) rides in the flight that starts its
    transaction, after the limits; with ``report_commit_lsn`` the flight that commits carries one more query, after
    its Sync, whose answer (the WAL position past the commit) lands in ``commit_lsn``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._begin_pending = False
        self._single_statement = False
        self._read_only = False
        self._commit_with: str | None = None
        self._guard: str | None = None
        self._report_lsn = False
        # A flight that commits (a single-statement unit's, or one carrying COMMIT) was written in this unit.
        self.unit_committed = False
        # Where the WAL stood right after the unit's commit (report_commit_lsn), else None.
        self.commit_lsn: str | None = None
        self.server_limits: Callable[[], ServerLimits | None] = _no_limits
        # Flights written in full: a caller tells "nothing was committed" from "a reply was lost".
        self.flights_sent = 0
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

    def begin_unit(
        self,
        *,
        single_statement: bool = False,
        read_only: bool = False,
        guard: str | None = None,
        report_commit_lsn: bool = False,
    ) -> None:
        """Start a unit of work: implicit one-Sync transactions per statement, and/or read-only transactions."""
        self._single_statement = single_statement
        self._read_only = read_only
        self._guard = guard
        self._report_lsn = report_commit_lsn
        self._commit_with = None
        self.unit_committed = False
        self.commit_lsn = None

    def end_unit(self) -> None:
        """Back to pg8000's behaviour: BEGIN before the first statement (still sent along with it)."""
        self._single_statement = False
        self._read_only = False
        self._guard = None
        self._report_lsn = False
        self._commit_with = None
        self.unit_committed = False

    def commit_with_next_statement(self, prefix: str | None) -> None:
        """Send COMMIT in the same flight as the next statement, if it starts with `prefix`; None cancels.

        For a unit whose last statement is known (the ORM flush of one object): if that statement fails, the server
        skips the COMMIT (and the unit is rolled back); when statements ran before it, a guard in the same flight
        aborts the transaction if any of them wrote, so the COMMIT commits that one statement or nothing. Any other
        next statement is sent as usual, and the COMMIT later on its own. One round trip less.
        """
        self._commit_with = prefix

    def _implicit(self) -> bool:
        return self._single_statement and not internals.in_transaction(self)

    def _refuse_after_commit(self, statement: str) -> None:
        # The unit's transaction has ended: anything more would commit on its own, i.e. part of the unit.
        if not self.unit_committed:
            return
        if self._single_statement:
            raise SingleStatementError(
                "a single_statement unit sends one statement: refused a second statement before sending it "
                f"({excerpt(statement)}); run these statements in a unit without single_statement"
            )
        raise UnitOfWorkError(
            f"the unit committed with its last statement: refused a statement after it before sending it "
            f"({excerpt(statement)})"
        )

    def _local_settings(self) -> list[tuple[str, str]]:
        """What the flight starting a transaction sets for it: the limits, and read-only mode when asked."""
        limits = self.server_limits()
        settings = limits.settings() if limits is not None else []
        return [*settings, ("transaction_read_only", "on")] if self._read_only else settings

    def execute_simple(self, statement: str) -> Any:
        if statement == _BEGIN and not internals.in_transaction(self):
            # Cursor.execute asks for BEGIN right before its statement: hold it back so both share one flight;
            # in single-statement mode there is none (the statement's own Sync commits it).
            self._begin_pending = not self._single_statement
            return internals.new_context(statement)
        self._refuse_after_commit(statement)
        self._commit_with = None  # COMMIT rides only with an extended-protocol statement
        implicit = self._implicit()
        begins = self._begin_pending
        starts = begins or implicit
        prefix = _BEGIN_PREFIX if begins else ""
        if starts:
            # A multi-statement Query runs as one transaction block, so SET LOCAL applies without a warning.
            prefix += "".join(f"SET LOCAL {name} = {value};\n" for name, value in self._local_settings())
            prefix += f"{self._guard};\n" if self._guard else ""
        if not prefix:
            context = internals.new_context(statement)
            self._send_flight(lambda: self.send_QUERY(statement))
            self.handle_messages(context)
            return context
        # One Query, not two: if BEGIN ever failed, a second Query would still run, in its own implicit
        # transaction, i.e. autocommitted. In one Query a parse error runs nothing, and a run-time error
        # leaves the transaction open and aborted, as pg8000's own two round trips would.
        context = internals.new_context(statement)
        report_lsn = implicit and self._report_lsn

        def compose() -> None:
            self.send_QUERY(prefix + statement)
            if report_lsn:
                # A Query of its own: in the same Query the statement's implicit transaction would not have ended.
                self.send_QUERY(COMMIT_LSN_SQL)

        self._send_flight(compose)
        self.unit_committed = self.unit_committed or implicit
        try:
            if report_lsn:
                self._read_with_commit_lsn(lambda: self.handle_messages(context))
            else:
                self.handle_messages(context)
        except DatabaseError as error:
            if begins and not internals.in_transaction(self):
                self._begin_then_fail(prefix, statement)
            _unshift_error_position(error, len(prefix))
            raise
        return context

    def _begin_then_fail(self, prefix: str, statement: str) -> None:
        """After a Query that failed to parse as a whole: BEGIN alone, then the statement again, in one flight.

        The server parses a Query's whole text before running any of it, so a syntax error in the statement ran
        BEGIN neither. pg8000's own BEGIN would have run, leaving the transaction open and failed (25P02 for
        what follows): rebuild that state, and raise the statement's own error (a second round trip, on this
        error path only).
        """

        def compose() -> None:
            self.send_QUERY(prefix)
            self.send_QUERY(statement)

        self._send_flight(compose)
        # Both replies are read, whatever the first says, so none is left on the wire for the next statement.
        try:
            self.handle_messages(internals.new_context(prefix))
        finally:
            self.handle_messages(internals.new_context(statement))

    def execute_unnamed(self, statement: str, vals: Any = (), oids: Any = (), stream: Any = None) -> Any:
        if stream is not None:
            if self._implicit():
                # pg8000's COPY path has several Syncs: outside a transaction the pooler could switch servers.
                raise InterfaceError("COPY needs a transaction: run it in a unit of work without single_statement")
            # COPY goes back and forth mid-statement, so it keeps pg8000's path (inside a transaction: safe).
            self._send_pending_begin()
            return super().execute_unnamed(statement, vals=vals, oids=oids, stream=stream)
        self._refuse_after_commit(statement)
        ride_prefix, self._commit_with = self._commit_with, None
        implicit = self._implicit()
        commits = implicit or (
            ride_prefix is not None
            and statement.startswith(ride_prefix)
            and (self._begin_pending or internals.in_transaction(self))
        )
        # pg8000 splits this over three Syncs, each one a round trip and, outside a transaction, a point where
        # the pooler may hand the server to another client between Parse and Execute. One Sync is one
        # (implicit) transaction. BEGIN goes as extended messages before it: if BEGIN failed, the server
        # skips everything up to the Sync, so the statement can never run outside the transaction.
        params = internals.make_params(self, vals)
        preamble: list[str] = []
        guard = [self._guard] if self._guard else []
        if self._begin_pending:
            preamble = [_BEGIN, *(f"SET LOCAL {name} = {value}" for name, value in self._local_settings()), *guard]
        elif commits and not implicit:
            # Statements ran before this one in its transaction: COMMIT rides only if none of them wrote.
            preamble = [_COMMIT_GUARD]
        elif implicit:
            # Set before the statement, undone by the Sync that commits it: nothing reaches the next client.
            # SET LOCAL outside a transaction block warns (into the server log, on every request); set_config(...,
            # true) does not. The statement returns no rows, so pg8000 sees only the statement's own.
            settings = self._local_settings()
            calls = ", ".join(f"set_config('{name}', '{value}', true)" for name, value in settings)
            preamble = [*([f"SELECT WHERE concat({calls}) IS NULL"] if settings else []), *guard]
        report_lsn = commits and self._report_lsn

        def compose() -> None:
            for sql in preamble:
                self.send_PARSE(internals.NULL_BYTE, sql, ())
                self.send_BIND(internals.NULL_BYTE, ())
                self.send_EXECUTE()
            self.send_PARSE(internals.NULL_BYTE, statement, oids)
            self.send_DESCRIBE_STATEMENT(internals.NULL_BYTE)
            self.send_BIND(internals.NULL_BYTE, params)
            self.send_EXECUTE()
            if commits and not implicit:
                # Skipped by the server (with everything up to the Sync) when the statement or the guard fails.
                self.send_PARSE(internals.NULL_BYTE, "COMMIT", ())
                self.send_BIND(internals.NULL_BYTE, ())
                self.send_EXECUTE()
            internals.write(internals.stream(self), internals.sync_message())
            if report_lsn:
                # After the Sync that commits: its own implicit transaction, past the commit record.
                self.send_QUERY(COMMIT_LSN_SQL)

        context = internals.new_context(statement)
        self._send_flight(compose)
        self.unit_committed = self.unit_committed or commits
        if report_lsn:
            self._read_with_commit_lsn(lambda: self.handle_messages(context))
        else:
            self.handle_messages(context)
        return context

    def commit(self) -> None:
        # pg8000 commits through execute_unnamed (three round trips), even with no transaction open.
        if internals.stream(self) is None:
            # PEP 249: a closed connection raises, as pg8000's own commit does.
            raise InterfaceError("connection is closed")
        self._begin_pending = False
        self._commit_with = None
        if internals.in_transaction(self):
            with pg_dbapi.server_errors_mapped():
                self._end_transaction("commit")

    def rollback(self) -> None:
        self._begin_pending = False
        self._commit_with = None
        if internals.in_transaction(self):
            self._end_transaction("rollback")

    def _end_transaction(self, sql: str) -> None:
        # One simple Query in the open transaction, whatever the unit sent before (it ends what was sent).
        context = internals.new_context(sql)
        report_lsn = sql == "commit" and self._report_lsn

        def compose() -> None:
            self.send_QUERY(sql)
            if report_lsn:
                self.send_QUERY(COMMIT_LSN_SQL)

        self._send_flight(compose)
        if report_lsn:
            self._read_with_commit_lsn(lambda: self.handle_messages(context))
        else:
            self.handle_messages(context)

    def _read_with_commit_lsn(self, read_reply: Callable[[], None]) -> None:
        """Read the reply of a flight that commits, then the answer of the commit-LSN query sent after its Sync.

        The second answer is read whenever the server answered the first (an error included), so nothing is left
        on the wire; after a network failure the connection is gone anyway.
        """
        lsn_context = internals.new_context(COMMIT_LSN_SQL)
        try:
            read_reply()
        except DatabaseError:
            self.handle_messages(lsn_context)
            raise
        self.handle_messages(lsn_context)
        rows = lsn_context.rows
        self.commit_lsn = str(rows[0][0]) if rows else None

    def _send_pending_begin(self) -> None:
        if self._begin_pending:
            sql = _BEGIN_PREFIX + "".join(f"SET LOCAL {name} = {value};\n" for name, value in self._local_settings())
            sql += f"{self._guard};\n" if self._guard else ""
            self._begin_pending = False
            self._send_flight(lambda: self.send_QUERY(sql))
            self.handle_messages(internals.new_context(sql))

    def _send_flight(self, compose: Callable[[], None]) -> None:
        """Write what ``compose`` sends with one flush; if composing fails, nothing reaches the socket."""
        if internals.stream(self) is None:
            raise InterfaceError("connection is closed")
        # pg8000's send_* write straight to its stream; pointing it at a buffer keeps a half-composed flight
        # (a value that fails to encode) from being sent ahead of the next statement.
        buffer = _FlightBuffer()
        sock = internals.swap_stream(self, buffer)
        try:
            compose()
        finally:
            internals.swap_stream(self, sock)
        self._begin_pending = False
        internals.write(sock, buffer.getvalue())
        internals.flush(sock)
        # Counted once the whole flight, Sync included, is with the kernel: a write that failed sent no Sync, so the
        # server committed nothing of it.
        self.flights_sent += 1


def excerpt(statement: str, limit: int = 80) -> str:
    """The statement on one line, clipped: enough to recognise it in an error message."""
    flat = " ".join(statement.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _unshift_error_position(error: DatabaseError, prefix_length: int) -> None:
    """Make an error's statement position count from the caller's statement, not the BEGIN prefix."""
    fields = error.args[0] if error.args else None
    if isinstance(fields, dict) and str(fields.get("P", "")).isdigit():
        fields["P"] = str(max(1, int(fields["P"]) - prefix_length))


def connect(**kwargs: Any) -> PipelinedConnection:
    """``pg8000.dbapi.connect`` (same keyword arguments) returning a PipelinedConnection over a TCP_NODELAY socket.

    ``hostaddr`` and ``sslnegotiation`` are understood too (lib.dbkit.transport).
    """
    context = kwargs.get("ssl_context")
    if isinstance(context, ssl.SSLContext) and context.sslsocket_class is ssl.SSLSocket and _CAN_CORK:
        # The context's documented hook for a custom socket class: the handshake's last flight waits for ours.
        context.sslsocket_class = FinishedWithStartupSSLSocket
    return transport.connect(PipelinedConnection, **kwargs)


_CAN_CORK: Final = hasattr(socket, "TCP_CORK")
# Linux: the unsent part of a TCP socket's send queue (linux/sockios.h).
_SIOCOUTQNSD: Final = 0x894B
# The one record a TLS 1.3 client writes before the server's flight is complete (the compatibility-mode CCS).
_LONE_CHANGE_CIPHER_SPEC: Final = 6


class FinishedWithStartupSSLSocket(ssl.SSLSocket):
    """A TLS socket that sends the handshake's Finished in the same TCP segment as the first application data.

    With TLS 1.3 the server answers the client's Finished with NewSessionTicket. When the ticket arrives before the
    startup message leaves (loopback, sometimes in-region), the startup message becomes a flight of its own, and
    the round-trip count of a new connection varies from run to run. Corking the socket from the end of the
    ClientHello until the first write (the startup message) makes Finished + startup one segment, so the ticket
    always lands after it. Nothing waits for the ticket, so no latency is added.
    """

    _corked = False

    def do_handshake(self, block: bool = False) -> None:
        timeout = self.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        self.settimeout(0)
        # Corked from the start, so the server cannot answer before the first wait below: the ClientHello is
        # sent there, and everything the client writes after it (the compatibility ChangeCipherSpec, Finished)
        # waits for the startup message. Flushing at every wait instead would send ChangeCipherSpec alone when
        # the server's flight arrives in pieces. A handshake that must send and wait again (HelloRetryRequest,
        # TLS 1.2) is delayed by the kernel's cork ceiling (200 ms) at most; servers that take the client's
        # X25519 key share (Neon's proxy, PgBouncer on OpenSSL) never need that.
        self._cork(True)
        hello_sent = False
        try:
            while True:
                try:
                    super().do_handshake()
                    return
                except ssl.SSLWantReadError:
                    if not hello_sent or self._unsent() > _LONE_CHANGE_CIPHER_SPEC:
                        # The ClientHello; later, a flight the server must see before it can answer: a second
                        # ClientHello after HelloRetryRequest (PostgreSQL up to 17 has no X25519, Python's first key
                        # share), TLS 1.2's Finished. Held back, it would wait for the cork ceiling (200 ms).
                        hello_sent = True
                        self._cork(False)
                        self._cork(True)
                    self._wait(deadline, readable=True)
                except ssl.SSLWantWriteError:
                    self._wait(deadline, readable=False)
        except BaseException:
            self._cork(False)
            raise
        finally:
            self.settimeout(timeout)

    def send(self, data: Any, flags: int = 0) -> int:
        sent = super().send(data, flags)
        self._cork(False)
        return sent

    def sendall(self, data: Any, flags: int = 0) -> None:
        super().sendall(data, flags)
        self._cork(False)

    def _unsent(self) -> int:
        """Bytes written to the socket that the kernel has not sent yet (held by the cork); 0 if it cannot tell."""
        try:
            queued = fcntl.ioctl(self.fileno(), _SIOCOUTQNSD, b"\0" * 4)
        except OSError:
            return 0
        return int(struct.unpack("i", queued)[0])

    def _cork(self, on: bool) -> None:
        if self._corked != on:
            self._corked = on
            with contextlib.suppress(OSError):
                # TCP_NODELAY leaves a "push" flag set that lets the next write through a cork: off while corked.
                if on:
                    self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
                self.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
                if not on:
                    self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _wait(self, deadline: float | None, *, readable: bool) -> None:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise TimeoutError("TLS handshake timed out")
        # poll, not select: select fails on descriptors above 1024 (hundreds of environments in one process).
        poller = select.poll()
        poller.register(self, select.POLLIN if readable else select.POLLOUT)
        if not poller.poll(None if wait is None else wait * 1000):
            raise TimeoutError("TLS handshake timed out")


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


# One simple Query, outside any transaction: what the stock first connect learns with BEGIN, two queries and ROLLBACK.
SERVER_DEFAULTS_SQL: Final = "SELECT current_schema(), current_setting('transaction_isolation')"


class PipelineDialect(pg_dbapi.DbapiDialect):
    """SQLAlchemy's pg8000 dialect on PipelinedConnection, initialised from what the server reported at startup.

    ``ask_server_defaults`` (default True): learn the default schema and isolation level at the first connect in
    one round trip, as the stock dialect does in more. False assumes Postgres' defaults (``public``, READ
    COMMITTED) and saves that round trip; the kit passes False only where neither can differ from them as far as
    it can see (see lib.dbkit.engine).
    """

    supports_statement_cache = True

    # Positional-or-keyword: create_engine() only passes on the keyword arguments it finds this way.
    def __init__(self, ask_server_defaults: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.ask_server_defaults = ask_server_defaults
        self._server_defaults: tuple[str, str] | None = None

    def open(self, **kwargs: Any) -> PipelinedConnection:
        return connect(**kwargs)

    # The stock first connect runs BEGIN, four queries and a three-round-trip ROLLBACK: 8 per new engine.
    # Postgres already sent server_version and standard_conforming_strings as ParameterStatus at startup
    # (PgBouncer passes them on); the default schema and isolation level come from one query, or are assumed.

    def initialize(self, connection: SAConnection) -> None:
        defaults = ("public", "READ COMMITTED")
        if self.ask_server_defaults:
            dbapi_connection = connection.connection.dbapi_connection
            context = internals.execute_simple_unpipelined(dbapi_connection, SERVER_DEFAULTS_SQL)
            schema, isolation = context.rows[0]
            defaults = (str(schema), str(isolation).upper())
        self._server_defaults = defaults
        try:
            super().initialize(connection)  # type: ignore[no-untyped-call]
        finally:
            self._server_defaults = None

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

    # During initialize: what the first connect learned (or assumed). Called directly at any other time (a connect
    # event may have changed search_path since), they ask the server, as the stock dialect always does.

    def _get_default_schema_name(self, connection: SAConnection) -> str:
        if self._server_defaults is not None:
            return self._server_defaults[0]
        return str(super()._get_default_schema_name(connection))  # type: ignore[no-untyped-call]

    def get_default_isolation_level(self, dbapi_conn: Any) -> IsolationLevel:
        # What SQLAlchemy restores at check-in after execution_options(isolation_level=...).
        if self._server_defaults is not None:
            return cast("IsolationLevel", self._server_defaults[1])
        return cast("IsolationLevel", super().get_default_isolation_level(dbapi_conn))  # type: ignore[no-untyped-call]

    def do_ping(self, dbapi_connection: Any) -> bool:
        ping(dbapi_connection)
        return True


registry.register(DRIVERNAME.replace("+", "."), __name__, PipelineDialect.__name__)
