"""The engine: built once per execution environment, on the pooler, with retries bounded by the Lambda deadline."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import pg8000.dbapi
import sqlalchemy.exc
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.engine.interfaces import ExecuteStyle
from sqlalchemy.pool import ConnectionPoolEntry

from lib.dbkit import pg8000_internals, pg_dbapi, pg_pipeline, pool_events, replica
from lib.dbkit.errors import (
    CommitOutcomeUnknownError,
    DatabaseProviderRefusedError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    InvalidDatabaseUrlError,
    PoolExhaustedError,
    SingleStatementError,
    UnsafeEngineOptionError,
)
from lib.dbkit.invocation import has_deadline, remaining_seconds
from lib.dbkit.observability import SERVICE, logger, metrics
from lib.dbkit.pg_errors import (
    final_connect_error,
    is_network_failure,
    is_retryable_connect_failure,
    login_refused,
    sqlstate,
)
from lib.dbkit.replica import PRIMARY, REPLICA, Fallback, ReplicaUnavailableError
from lib.dbkit.settings import PoolKind, ReplicaSettings, Settings, get_settings, refresh_database_url

T = TypeVar("T")

# Keep this much of the invocation for answering (a 503 beats a Lambda timeout).
DEADLINE_MARGIN_SECONDS = 0.5
CONNECT_BACKOFF_BASE = 0.1
CONNECT_BACKOFF_CAP = 2.0
CONNECT_MAX_ATTEMPTS = 8
EXHAUSTION_RETRIES = 2
# A connect attempt's socket timeout never goes below these (the primary's as before; the replica's budget is short).
MIN_CONNECT_ATTEMPT_SECONDS = {PRIMARY: 0.5, REPLICA: 0.1}
# The share of the invocation's remaining time a unit may spend on each: a replica that stops answering mid-unit
# (a partition, a stalled compute) leaves the primary the other half to run the unit again.
TIME_SHARE = {PRIMARY: 1.0, REPLICA: 0.5}
UNIT_OF_WORK_ATTEMPTS = 2
RETRY_AFTER_SECONDS = 1
# The server's limits end this much before the client's socket timeout, so the server cancels the statement
# (the connection stays usable, the lock wait ends) rather than the client giving up on a still-waiting backend.
SERVER_LIMIT_SLACK_SECONDS = 0.25
MIN_SERVER_LIMIT_MS = 100
# Cancelled by the server at a limit we set: statement_timeout (57014) or lock_timeout (55P03).
SERVER_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})

# Options that make the pg8000 dialect run session-level SET on pooled connections or switch to AUTOCOMMIT:
# behind a transaction pooler they land on an arbitrary server or return wrong rows.
UNSAFE_OPTIONS = frozenset({"isolation_level", "postgresql_readonly", "postgresql_deferrable", "autocommit"})


def refuse_unsafe_options(options: Mapping[str, Any]) -> None:
    unsafe = sorted(UNSAFE_OPTIONS & set(options))
    if unsafe:
        raise UnsafeEngineOptionError(
            f"engine option(s) {', '.join(unsafe)} refused: behind a transaction pooler they either switch pg8000 to "
            "AUTOCOMMIT (wrong rows) or run session-level SET on a shared server; use SET LOCAL / SET TRANSACTION "
            "inside the transaction instead"
        )


# SQLAlchemy's own pg8000 dialect and queries, over pg8000.dbapi with exceptions classed as that dialect gives them.
STOCK_DRIVERNAME = pg_dbapi.DRIVERNAME
# Where a running unit of work keeps what it declared, on its connection (the engine's events read it).
_UNIT_KEY: Final = "dbkit_unit_of_work"
# Errors a database call can raise outside run_in_transaction (a Session on get_engine(), say): what the HTTP layer
# hands to database_error() to tell "the database is away" (503) from a bug (500).
DRIVER_ERRORS: Final = (sqlalchemy.exc.SQLAlchemyError, pg8000.dbapi.Error, ConnectionError, TimeoutError)


@dataclass
class UnitOfWork:
    """What the running unit declared, and what it sent so far (kept on its connection while it runs)."""

    single_statement: bool
    read_only: bool
    # The read replica's staleness check (lib.dbkit.replica.guard_sql), sent as the transaction starts.
    guard: str | None = None
    statements: int = 0
    # Whether a statement sent so far may have written (anything but a plain SELECT): a guess from the SQL text,
    # used only to decide whether COMMIT may ride with the last statement (the server checks it again).
    may_have_written: bool = False


def unit_of(connection: Connection) -> UnitOfWork | None:
    """The unit of work running on `connection` (None outside run_in_transaction)."""
    unit = connection.info.get(_UNIT_KEY)
    return unit if isinstance(unit, UnitOfWork) else None


def choose_driver(settings: Settings) -> tuple[str, Callable[..., Any]]:
    """The dialect name and connect function for DB_DRIVER; the stock dialect when the pipeline cannot run."""
    if settings.driver == "stock":
        return STOCK_DRIVERNAME, pg_dbapi.connect
    problems = pg8000_internals.problems()
    if not problems:
        return pg_pipeline.DRIVERNAME, pg_pipeline.connect
    # Still correct behind the pooler (never AUTOCOMMIT, statements inside transactions): only round trips are lost.
    logger.warning(
        "pipelined pg8000 driver unavailable; using SQLAlchemy's stock pg8000 dialect",
        extra={
            "pg8000": pg8000_internals.installed_version(),
            "problems": problems,
            "fix": "pin pg8000 to a tested version (requirements.txt) or set DB_DRIVER=stock to silence this",
        },
    )
    with single_metric(name="DbDriverFallback", unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension(name="service", value=SERVICE)
    return STOCK_DRIVERNAME, pg_dbapi.connect


def _invocation_budget() -> float:
    return remaining_seconds() - DEADLINE_MARGIN_SECONDS


def replica_connect_budget(replica: ReplicaSettings) -> float:
    """Seconds the replica may take to connect: its budget, and never more than half the invocation's time left.

    The other half is the primary's, should the replica not make it (a compute waking for longer, a refusal).
    """
    return min(replica.connect_budget, _invocation_budget() / 2)


class _Connector:
    """Opens pg8000 connections with backoff while a compute wakes up; re-reads a rotated secret once.

    All attempts of one connect fit in ``budget()`` seconds from its start: the invocation's remaining time for
    the primary; for the read replica its connect budget (lib.dbkit.engine.replica_connect_budget), whose failures
    are logged at DEBUG only: the unit then runs on the primary, and that line tells the story.
    """

    def __init__(
        self,
        settings: Settings,
        connect: Callable[..., Any],
        *,
        role: str = PRIMARY,
        budget: Callable[[], float] = _invocation_budget,
    ) -> None:
        self._connect = connect
        self.role = role
        self._budget = budget
        self._use(settings)

    def _use(self, settings: Settings) -> None:
        self.settings = settings
        database = settings.database
        # Built once: loading CA files for every new connection would cost each cold request.
        self._kwargs: dict[str, Any] = dict(database.connect_args())

    def __call__(self) -> Any:
        attempt = 0
        refreshed = False
        deadline = time.monotonic() + self._budget()
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                connection = self._connect_once(deadline)
            except Exception as error:
                code = sqlstate(error)
                refused = login_refused(error)
                if refused is not None and not refreshed and self.settings.url_from_secret_store:
                    # A rotated secret: fetch it again (bypassing the cache) and try once more at once.
                    refreshed = True
                    self._use(refresh_database_url(self.settings))
                    logger.warning("database login refused; re-read the secret", extra={"sqlstate": code})
                    continue
                fatal = final_connect_error(error)
                if isinstance(fatal, DatabaseProviderRefusedError) and self.role == PRIMARY:
                    # Only the owner can fix this; the log line says where.
                    logger.error(
                        "database provider refused the connection",
                        extra={"reason": fatal.reason, "action": fatal.action, "attempt": attempt},
                    )
                if fatal is not None:
                    raise fatal from error
                retryable = is_retryable_connect_failure(error)
                delay = random.uniform(0, min(CONNECT_BACKOFF_CAP, CONNECT_BACKOFF_BASE * 2**attempt))
                budget = deadline - time.monotonic()
                log = logger.warning if self.role == PRIMARY else logger.debug
                log(
                    "database connect attempt failed",
                    extra={
                        "role": self.role,
                        "attempt": attempt,
                        "error": type(error).__name__,
                        "sqlstate": code,
                        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
                        "retry_in_ms": round(delay * 1000) if retryable else None,
                    },
                )
                if not retryable or attempt >= CONNECT_MAX_ATTEMPTS or delay >= budget:
                    raise
                pool_events.current(self.role).connect_retries += 1
                time.sleep(delay)
                continue
            if attempt > 1:
                logger.info("database connected after retries", extra={"attempt": attempt, "role": self.role})
            return connection

    def _connect_once(self, deadline: float) -> Any:
        floor = MIN_CONNECT_ATTEMPT_SECONDS[self.role]
        timeout = min(self._kwargs["timeout"], max(floor, deadline - time.monotonic()))
        connection = self._connect(**{**self._kwargs, "timeout": timeout})
        if isinstance(connection, pg_pipeline.PipelinedConnection):
            connection.server_limits = self._server_limits
        # pg8000's timeout is one socket timeout for the connection's whole life: it bounds connecting only;
        # statement time is bounded per checkout by the invocation's remaining time (see _bound_statement_time).
        _set_socket_timeout(connection, None)
        return connection

    def _server_limits(self) -> pg_pipeline.ServerLimits:
        return server_limits(self.settings, share=TIME_SHARE[self.role])


def server_limits(settings: Settings, *, share: float = 1.0) -> pg_pipeline.ServerLimits:
    """The limits for a transaction starting now: `share` of the invocation's remaining time, else the settings'."""
    if has_deadline():
        remaining = (remaining_seconds() - DEADLINE_MARGIN_SECONDS) * share
        limit_ms = max(MIN_SERVER_LIMIT_MS, int((remaining - SERVER_LIMIT_SLACK_SECONDS) * 1000))
        # A frozen or killed invocation can hold nothing past its deadline: the server ends that session.
        return pg_pipeline.ServerLimits(limit_ms, limit_ms, max(MIN_SERVER_LIMIT_MS, int(remaining * 1000)))
    return pg_pipeline.ServerLimits(
        statement_ms=round(settings.statement_timeout * 1000),
        lock_ms=round(settings.lock_timeout * 1000),
        idle_in_transaction_ms=round(settings.idle_in_transaction_timeout * 1000),
    )


def _set_socket_timeout(connection: Any, timeout: float | None) -> None:
    sock = pg8000_internals.raw_socket(connection)
    if sock is not None:
        sock.settimeout(timeout)


def asks_server_defaults(settings: Settings) -> bool:
    """Whether the pipelined dialect learns the default schema and isolation level at its first connect.

    Serverless engines skip that round trip (every cold start would pay it): their requests never read either (no
    reflection; isolation_level is refused), and their URL cannot set them (the pooler refuses startup options).
    Migration and server engines ask: Alembic compares against the default schema, so a role's or database's own
    search_path must be seen.
    """
    return settings.mode != "serverless"


def build_engine(
    settings: Settings,
    *,
    role: str = PRIMARY,
    driver: tuple[str, Callable[..., Any]] | None = None,
    connect_budget: Callable[[], float] = _invocation_budget,
    **options: Any,
) -> Engine:
    """A pg8000 engine for the settings' profile; refuses options that are unsafe behind a transaction pooler.

    `role` tags its pool events, metrics and log lines (primary, replica); `driver` reuses a choice already made
    (the replica's engine takes the primary's: one fallback warning per environment); `connect_budget` bounds
    each connect (all its attempts) in seconds.
    """
    refuse_unsafe_options(options)
    refuse_unsafe_options(options.get("execution_options", {}))
    pool = settings.pool
    pool_options: dict[str, Any]
    if pool.kind is PoolKind.NULLPOOL:
        pool_options = {"poolclass": pool_events.TimedNullPool}
    else:
        pool_options = {
            "poolclass": pool_events.TimedQueuePool,
            "pool_size": pool.pool_size,
            "max_overflow": pool.max_overflow,
            "pool_timeout": pool.pool_timeout,
            "pool_recycle": pool.pool_recycle,
            "pool_use_lifo": True,
        }
    if settings.database.startup_options and not pg8000_internals.accepts_startup_params():
        raise InvalidDatabaseUrlError(
            f"options={settings.database.startup_options!r} needs pg8000 >= 1.31.4 (startup_params), but pg8000 "
            f"{pg8000_internals.installed_version()} is installed: upgrade pg8000, or drop the endpoint option and "
            "let TLS SNI name the endpoint"
        )
    drivername, connect = driver or choose_driver(settings)
    if drivername == pg_pipeline.DRIVERNAME:
        options = {"ask_server_defaults": asks_server_defaults(settings), **options}
    engine = create_engine(
        settings.database.sqlalchemy_url().set(drivername=drivername),
        creator=_Connector(settings, connect, role=role, budget=connect_budget),
        pool_pre_ping=pool.pool_pre_ping,
        pool_reset_on_return="rollback",
        **pool_options,
        **options,
    )
    _install_guards(engine, settings, role)
    pool_events.attach(engine, role)
    # Once per environment: says which pool profile, TLS mode (and any serverless upgrade) is in force.
    logger.info("database engine created", extra={"database": settings.describe(), "driver": drivername, "role": role})
    for warning in settings.warnings:
        logger.warning("database configuration warning", extra={"warning": warning, "role": role})
    return engine


def _driver_of(engine: Engine) -> tuple[str, Callable[..., Any]]:
    """The driver an engine was built on, to build another one (the replica's) on the same."""
    if isinstance(engine.dialect, pg_pipeline.PipelineDialect):
        return pg_pipeline.DRIVERNAME, pg_pipeline.connect
    return STOCK_DRIVERNAME, pg_dbapi.connect


def _install_guards(engine: Engine, settings: Settings, role: str) -> None:
    idle_ping_seconds = settings.pool.idle_ping_seconds

    @event.listens_for(engine, "before_cursor_execute")
    def follow_unit_statements(
        conn: Connection, _cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        # Before anything is written. A single-statement unit's statement commits on its own (pipelined driver), so
        # a second one (or the first of several an executemany sends) would commit part of the unit: refused,
        # on both drivers, so a unit behaves the same whichever the engine picked.
        unit = unit_of(conn)
        if unit is None:
            return
        if not _PLAIN_SELECT.match(statement) or _LOCKING_CLAUSE.search(statement):
            unit.may_have_written = True
        if not unit.single_statement:
            return
        several = executemany and _several_statements(context, parameters)
        if unit.statements or several:
            what = (
                "a statement the driver sends several times (one per row or batch)" if several else "a second statement"
            )
            raise SingleStatementError(
                f"a single_statement unit sends one statement: refused {what} before sending it "
                f"({pg_pipeline.excerpt(statement)}); run it in a unit without single_statement"
            )
        unit.statements += 1

    if not isinstance(engine.dialect, pg_pipeline.PipelineDialect):

        @event.listens_for(engine, "begin")
        def set_server_limits(conn: Connection) -> None:
            # The pipelined driver sends the limits in the flight that starts each transaction; other drivers send
            # BEGIN on their own, so here they cost one more round trip. Every transaction gets them, whether
            # run_in_transaction, a Session on get_engine() or engine.begin() started it. On the DB-API cursor: the
            # kit's statement, not one of the work's (no events, no echo, not counted as the unit's statement).
            unit = unit_of(conn)
            limits = server_limits(settings, share=TIME_SHARE[role])
            sql = limits.set_local_sql(read_only=unit is not None and unit.read_only)
            # The replica's staleness guard rides in the same simple query: no round trip of its own.
            sql += f"{unit.guard};\n" if unit is not None and unit.guard else ""
            _execute_raw(conn, sql)

    @event.listens_for(engine, "handle_error")
    def classify_disconnects(context: ExceptionContext) -> None:
        # Neon's suspend (57P01), a killed backend or a timed-out socket: mark the connection dead so the pool drops it.
        if not context.is_disconnect and is_network_failure(context.original_exception):
            context.is_disconnect = True

    @event.listens_for(engine, "set_engine_execution_options")
    def refuse_engine_options(_engine: Engine, options: Mapping[str, Any]) -> None:
        refuse_unsafe_options(options)

    @event.listens_for(engine, "set_connection_execution_options")
    def refuse_connection_options(_connection: Any, options: Mapping[str, Any]) -> None:
        refuse_unsafe_options(options)

    @event.listens_for(engine.pool, "checkout")
    def check_after_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        # Free (one syscall, no round trip): a connection the server or pooler already closed (restart, idle
        # timeout) is replaced before anything is sent on it, so even a write can be re-run safely.
        if pg8000_internals.peer_closed(dbapi_connection):
            raise sqlalchemy.exc.DisconnectionError("the server closed the connection while it sat in the pool")
        # A connection that sat idle (frozen environment, Neon suspend) gets one ping; a busy one gets none.
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is not None and time.monotonic() - checked_in_at > idle_ping_seconds:
            pool_events.current(role).idle_pings += 1
            _bound_statement_time(dbapi_connection, share=TIME_SHARE[role])
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as error:
                reason = f"idle connection failed its ping: {type(error).__name__}"
                raise sqlalchemy.exc.DisconnectionError(reason) from error
        _bound_statement_time(dbapi_connection, share=TIME_SHARE[role])


_PLAIN_SELECT: Final = re.compile(r"\s*SELECT\b", re.IGNORECASE)
_LOCKING_CLAUSE: Final = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE|KEY\s+SHARE)\b", re.IGNORECASE)


def _several_statements(context: Any, parameters: Any) -> bool:
    """Whether an executemany goes to the server as more than one statement."""
    rows = len(getattr(context, "compiled_parameters", None) or ())
    if rows <= 1:
        return False
    if getattr(context, "execute_style", None) is not ExecuteStyle.INSERTMANYVALUES:
        return True  # pg8000's executemany: one statement per row
    # insertmanyvalues: one multi-row INSERT per batch of rows, or one per row when it cannot batch them.
    dialect = context.dialect
    one_row_params = len(context.compiled.bind_names)
    page = context.execution_options.get("insertmanyvalues_page_size", dialect.insertmanyvalues_page_size)
    row_at_a_time = len(parameters) <= one_row_params
    return row_at_a_time or rows > page or rows * one_row_params > dialect.insertmanyvalues_max_parameters


def _bound_statement_time(dbapi_connection: Any, *, share: float = 1.0) -> None:
    # In Lambda a hung statement must fail before the invocation is killed, so the client gets a clean 503 (or, on
    # the replica, the unit runs on the primary); a long-running server has no deadline and its statements may take
    # as long as they take.
    timeout = max(0.2, (remaining_seconds() - DEADLINE_MARGIN_SECONDS) * share) if has_deadline() else None
    _set_socket_timeout(dbapi_connection, timeout)


class EngineHolder:
    """The engines of an execution environment, built on first use (not at import: INIT is capped at 10 s).

    The primary's engine, and the read replica's when one is configured: built at the first read-only unit, with a
    tiny pool of its own. After the replica failed to connect, read-only units go straight to the primary for a
    while (lib.dbkit.replica's cooldowns), so a refusing or unreachable replica costs one attempt, not one per unit.
    """

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._settings: Settings | None = None
        self._replica: Engine | None = None
        self._replica_skipped_until = 0.0
        self._replica_skip_reason = ""

    def engine(self) -> Engine:
        if self._engine is None:
            self._settings = get_settings()
            self._engine = build_engine(self._settings)
        return self._engine

    def engine_settings(self) -> Settings:
        """The settings the engine was built from."""
        self.engine()
        assert self._settings is not None
        return self._settings

    def replica_engine(self) -> Engine | None:
        """The read replica's engine (built on first use), or None when no replica is configured."""
        replica_settings = self.engine_settings().replica
        if replica_settings is None:
            return None
        if self._replica is None:
            self._replica = build_engine(
                replica_settings.settings,
                role=REPLICA,
                driver=_driver_of(self.engine()),
                connect_budget=lambda: replica_connect_budget(replica_settings),
            )
        return self._replica

    def replica_skipped(self) -> str | None:
        """Why read-only units skip the replica right now (a recent connect failure), or None."""
        if time.monotonic() < self._replica_skipped_until:
            return self._replica_skip_reason
        return None

    def replica_failed(self, fallback: Fallback) -> None:
        """The replica could not serve a unit: skip it for the fallback's cooldown."""
        if fallback.cooldown > 0:
            self._replica_skipped_until = time.monotonic() + fallback.cooldown
            self._replica_skip_reason = fallback.reason

    def dispose(self) -> None:
        for engine in (self._engine, self._replica):
            if engine is not None:
                engine.dispose()
        self._engine = None
        self._replica = None
        self._replica_skipped_until = 0.0


_holder = EngineHolder()
# Simulations of many execution environments in one process (load tests, benchmarks) give each its own holder.
_environment: ContextVar[EngineHolder | None] = ContextVar("execution_environment", default=None)


def _current() -> EngineHolder:
    return _environment.get() or _holder


@contextmanager
def execution_environment(holder: EngineHolder) -> Iterator[EngineHolder]:
    """Run the block (and the worker threads it hands work to) as `holder`'s execution environment."""
    token = _environment.set(holder)
    try:
        yield holder
    finally:
        _environment.reset(token)


def get_engine() -> Engine:
    """The execution environment's engine (built lazily from lib.dbkit.settings)."""
    return _current().engine()


def dispose_engine() -> None:
    """Close every pooled connection and forget the engine (SnapStart, tests, settings changes)."""
    _current().dispose()


def _unavailable(error: BaseException) -> DatabaseUnavailableError:
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        pool_events.current().pool_exhausted += 1
        return PoolExhaustedError("database connection pool exhausted", retry_after=RETRY_AFTER_SECONDS)
    return DatabaseUnavailableError(
        f"database unavailable ({type(error).__name__}, sqlstate {sqlstate(error)})", retry_after=RETRY_AFTER_SECONDS
    )


def _is_unavailable(error: BaseException) -> bool:
    """The database could not serve us for now: gone connection, exhausted pool, or connect retries ran out."""
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        return True
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        return bool(error.connection_invalidated) or is_retryable_connect_failure(error.orig)
    return is_retryable_connect_failure(error)


def database_error(error: BaseException) -> DatabaseUnavailableError | None:
    """The 503 kit error a raw driver or pool error means (the database is away, busy or too slow), else None.

    run_in_transaction raises these itself; code that uses the engine directly (a Session on get_engine()) gets
    SQLAlchemy's and the driver's own errors, which the HTTP layer maps through this.
    """
    if isinstance(error, DatabaseUnavailableError):
        return error
    if sqlstate(error) in SERVER_TIMEOUT_SQLSTATES:
        return DatabaseTimeoutError(
            f"database did not answer in time (sqlstate {sqlstate(error)})", retry_after=RETRY_AFTER_SECONDS
        )
    if _is_unavailable(error):
        return _unavailable(error)
    return None


def run_in_transaction(
    work: Callable[[Connection], T],
    *,
    single_statement: bool = False,
    read_only: bool = False,
    idempotent: bool = False,
    after_lsn: str | None = None,
) -> T:
    """The one unit of work for handlers: run `work` in one transaction, committed when it returns.

    The server enforces time limits (statement, lock wait, idle in transaction) from the invocation's remaining
    time, set transaction-locally in the flight that starts the transaction. `single_statement` says `work` runs
    exactly one statement: the pipelined driver sends it as its own implicit transaction in one round trip (no
    BEGIN/COMMIT), and a second statement is refused before it is sent (SingleStatementError, on both drivers).
    `read_only` makes the server refuse writes, and so makes every failure safe to re-run. `idempotent` says
    running `work` twice stores it once (an Idempotency-Key): then an unknown commit outcome is re-run once
    instead of raised. lib.dbkit.session.run_in_session is the same unit with an ORM Session.

    With a read replica configured (DATABASE_READ_URL), a `read_only` unit runs there, and on the primary instead
    when the replica cannot serve it: refused, not connected within its budget, its connection lost, lagging more
    than DB_REPLICA_MAX_LAG, or not yet past `after_lsn` (a commit_lsn() a client carried back: the unit then sees
    that write; other units run on the primary, which has every commit, so it changes nothing for them). A write
    in a read-only unit is refused by the server wherever it runs. Write units report where the WAL stood after
    their commit (lib.dbkit.replica.commit_lsn()).

    Re-runs `work` once when the connection fails before anything could have been committed (a dead reused
    connection), and waits briefly when the pool is exhausted. A connection failure once a commit was sent (COMMIT,
    or a single-statement write's flight) raises CommitOutcomeUnknownError unless `read_only` or `idempotent`;
    a statement the server cancelled at its limit raises DatabaseTimeoutError and is not re-run.
    """
    lsn = replica.parse_lsn(after_lsn) if after_lsn is not None else None
    holder = _current()
    flags = {"single_statement": single_statement, "read_only": read_only, "idempotent": idempotent}
    replica_engine = holder.replica_engine() if read_only else None
    if replica_engine is not None:
        replica_settings = holder.engine_settings().replica
        assert replica_settings is not None
        skipped = holder.replica_skipped()
        if skipped is not None:
            _fell_back(Fallback(f"skipping the replica for a while: {skipped}"))
        elif replica_connect_budget(replica_settings) <= MIN_CONNECT_ATTEMPT_SECONDS[REPLICA]:
            _fell_back(Fallback("too little time left to try the replica"))
        else:
            guard = replica.guard_sql(max_lag=replica_settings.max_lag, after_lsn=lsn)
            try:
                result = _run_unit(replica_engine, REPLICA, work, guard=guard, report_lsn=False, **flags)
            except ReplicaUnavailableError as unavailable:
                holder.replica_failed(unavailable.fallback)
                _fell_back(unavailable.fallback)
            else:
                pool_events.current().replica_reads += 1
                return result
    report_lsn = not read_only and holder.engine_settings().replica is not None
    return _run_unit(holder.engine(), PRIMARY, work, guard=None, report_lsn=report_lsn, **flags)


def _fell_back(fallback: Fallback) -> None:
    """One line and one count per read-only unit that runs on the primary instead of the replica."""
    pool_events.current().replica_fallbacks += 1
    logger.warning(
        "read-only unit runs on the primary: the replica cannot serve it",
        extra={"reason": fallback.reason, **fallback.details},
    )


def _run_unit(
    engine: Engine,
    role: str,
    work: Callable[[Connection], T],
    *,
    single_statement: bool,
    read_only: bool,
    idempotent: bool,
    guard: str | None,
    report_lsn: bool,
) -> T:
    """run_in_transaction's retry loop on one engine; on the replica, what it cannot serve raises for the primary."""
    exhaustion_retries = 0
    attempt = 0
    outcome_unknown = False
    while True:
        attempt += 1
        at_risk = False
        connection: Connection | None = None
        unit_info: dict[Any, Any] | None = None
        pipelined: pg_pipeline.PipelinedConnection | None = None
        try:
            connection = engine.connect()
            unit_info = connection.info
            unit_info[_UNIT_KEY] = UnitOfWork(single_statement=single_statement, read_only=read_only, guard=guard)
            dbapi_connection = connection.connection.dbapi_connection
            if isinstance(dbapi_connection, pg_pipeline.PipelinedConnection):
                pipelined = dbapi_connection
                pipelined.begin_unit(
                    single_statement=single_statement,
                    read_only=read_only,
                    guard=guard,
                    report_commit_lsn=report_lsn,
                )
            # Other drivers get the limits (and read-only mode, and the guard) from the engine's begin event.
            transaction = connection.begin()
            result = work(connection)
            at_risk = True
            transaction.commit()
            if report_lsn:
                replica.record_commit_lsn(_commit_lsn(connection, pipelined))
            return result
        except Exception as error:
            if pipelined is not None and pipelined.unit_committed:
                # A flight that commits was sent (a single-statement unit's statement, whose Sync commits it, or a
                # statement carrying COMMIT): the outcome is the server's, whatever became of the reply.
                at_risk = True
            if connection is not None:
                _rollback_quietly(connection)
            if role == REPLICA:
                # Read-only: nothing to lose. Whatever keeps the replica from serving, the primary serves instead.
                fallback = replica.fallback_for(error, connected=connection is not None)
                if fallback is not None:
                    raise ReplicaUnavailableError(fallback) from error
            if isinstance(error, sqlalchemy.exc.TimeoutError) and exhaustion_retries < EXHAUSTION_RETRIES:
                exhaustion_retries += 1
                if remaining_seconds() > 1 + DEADLINE_MARGIN_SECONDS:
                    time.sleep(random.uniform(0.05, 0.2))
                    attempt -= 1
                    continue
            if sqlstate(error) in SERVER_TIMEOUT_SQLSTATES:
                logger.warning("statement cancelled at its server-side time limit", extra={"sqlstate": sqlstate(error)})
                raise DatabaseTimeoutError(
                    f"database did not answer in time (sqlstate {sqlstate(error)})", retry_after=RETRY_AFTER_SECONDS
                ) from error
            if not _is_unavailable(error):
                raise
            if isinstance(error, sqlalchemy.exc.TimeoutError):
                logger.warning("connection pool exhausted", extra={"retries": exhaustion_retries})
                raise _unavailable(error) from error
            # A read has nothing to lose; a write whose commit was sent may have landed: re-running could store
            # it twice, unless the work is idempotent.
            unknown = at_risk and not read_only
            outcome_unknown = outcome_unknown or unknown
            retry = (not unknown or idempotent) and attempt < UNIT_OF_WORK_ATTEMPTS and remaining_seconds() > 1
            logger.warning(
                "transaction failed on a dead connection",
                extra={
                    "error": type(error).__name__,
                    "sqlstate": sqlstate(error),
                    "commit_sent": at_risk,
                    "retrying": retry,
                },
            )
            if not retry:
                if outcome_unknown:
                    raise CommitOutcomeUnknownError(
                        "the connection failed after the commit was sent; the outcome is unknown",
                        retry_after=RETRY_AFTER_SECONDS,
                    ) from error
                raise _unavailable(error) from error
        finally:
            if pipelined is not None:
                pipelined.end_unit()
            if unit_info is not None:
                # The dict of the connection the unit started on (an invalidated connection starts a fresh one).
                unit_info.pop(_UNIT_KEY, None)
            if connection is not None:
                connection.close()


def _commit_lsn(connection: Connection, pipelined: pg_pipeline.PipelinedConnection | None) -> str | None:
    """Where the WAL stood after the unit's commit: from the commit's own flight, or one more query (stock driver)."""
    if pipelined is not None:
        return pipelined.commit_lsn
    dbapi_connection = connection.connection.dbapi_connection
    try:
        rows = pg8000_internals.execute_simple_unpipelined(dbapi_connection, replica.COMMIT_LSN_SQL).rows
    except Exception as error:  # noqa: BLE001 - the unit committed; only its read-your-writes token is lost.
        if is_network_failure(error):
            connection.invalidate(error)
        logger.warning("commit LSN not read after the commit", extra={"error": type(error).__name__})
        return None
    return str(rows[0][0]) if rows else None


def _execute_raw(connection: Connection, sql: str) -> None:
    """Run `sql` on the DB-API cursor; a network failure invalidates the connection, as SQLAlchemy would."""
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    try:
        dbapi_connection.cursor().execute(sql)
    except Exception as error:
        if is_network_failure(error):
            connection.invalidate(error)
        raise


def _rollback_quietly(connection: Connection) -> None:
    try:
        connection.rollback()
    except Exception as error:  # noqa: BLE001 - the connection is already broken; the original error matters.
        logger.debug("rollback after failure also failed", extra={"error": type(error).__name__})


def ping() -> None:
    """One round trip to the database, outside any transaction; DatabaseUnavailableError when unreachable."""
    engine = get_engine()
    attempt = 0
    while True:
        attempt += 1
        try:
            with engine.connect() as connection:
                dbapi_connection = connection.connection.dbapi_connection
                assert dbapi_connection is not None
                try:
                    engine.dialect.do_ping(dbapi_connection)
                except Exception:
                    # The ping bypasses SQLAlchemy's error handling: drop the connection ourselves.
                    connection.invalidate()
                    raise
            return
        except Exception as error:
            if not _is_unavailable(error):
                raise
            retry = attempt < UNIT_OF_WORK_ATTEMPTS and remaining_seconds() > 1
            logger.warning("ping failed", extra={"error": type(error).__name__, "retrying": retry})
            if not retry:
                raise _unavailable(error) from error


def _register_snapstart_hooks() -> None:
    """With SnapStart no socket may live in the snapshot: drop the engine before it and after restore."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "snap-start":
        return
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        logger.warning("SnapStart detected but snapshot_restore_py is missing; engine is not disposed at snapshot")
        return
    register_before_snapshot(dispose_engine)
    register_after_restore(dispose_engine)


_register_snapstart_hooks()
