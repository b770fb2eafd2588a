"""The configurations the bench compares, behind one interface: invoke the API or the scheduled job, start over."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql.pg8000 import PGDialect_pg8000
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.orm import Session

from devtools.bench.orm import OrmUnit
from devtools.bench.seed import Handler, create_psycopg_engine, create_seed_engine, create_seed_handler, seed_purge
from devtools.lambda_context import FakeLambdaContext
from lib.dbkit import engine as lib_engine
from lib.dbkit import invocation
from lib.dbkit import settings as lib_settings
from lib.dbkit.dsn import DatabaseUrl, parse_database_url
from lib.dbkit.observability import logger
from lib.dbkit.session import run_in_session
from lib.dbkit.settings import DATABASE_VARIABLES


class Profile(Protocol):
    """One configuration under test, standing for one execution environment at a time."""

    name: str

    def activate(self) -> None:
        """Make this profile the process's configuration (a new execution environment)."""

    def new_environment(self, *, idle_ping_seconds: float | None = None) -> None:
        """Forget the engine: the next request is the first of a new execution environment."""

    def engine(self) -> Engine:
        """The environment's engine (built if needed)."""

    def api(self, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke the API function with an HTTP API event."""

    def scheduled(self, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke the scheduled job once; the summary it returns."""

    def orm(self, unit: OrmUnit) -> Any:
        """Run one ORM unit of work the profile's way (as a handler would, inside an invocation); its result."""

    def close(self) -> None:
        """Close every connection the profile holds."""


def set_database_environment(values: Mapping[str, str]) -> None:
    """Point the kit's settings at a configuration, as a Lambda environment's variables would; drop the old engine."""
    lib_engine.dispose_engine()
    for name in DATABASE_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(values)
    # The settings are cached per process (per execution environment); a new configuration is a new environment.
    lib_settings.clear_settings()


def template_environment(
    url: str,
    pooler_hosts: str,
    *,
    pool: str,
    driver: str = "pipeline",
    read_url: str | None = None,
    max_lag: str | None = None,
) -> dict[str, str]:
    """Serverless mode on the pooled URL with a DB_POOL profile (tiny = the template's default) and DB_DRIVER; with
    `read_url`, a read replica (DATABASE_READ_URL) and its DB_REPLICA_MAX_LAG."""
    environ = {
        "DATABASE_URL": url,
        "DB_MODE": "serverless",
        "DB_POOLER_HOSTS": pooler_hosts,
        "DB_POOL": pool,
        "DB_DRIVER": driver,
    }
    if read_url is not None:
        environ["DATABASE_READ_URL"] = read_url
    if max_lag is not None:
        environ["DB_REPLICA_MAX_LAG"] = max_lag
    return environ


def lambda_context(function_name: str = "ApiFunction", timeout_ms: int = 25_000) -> FakeLambdaContext:
    return FakeLambdaContext(function_name=function_name, timeout_ms=timeout_ms)


@dataclass
class TemplateProfile:
    """The real handlers (handlers.api, handlers.scheduled) on whatever lib.dbkit.engine builds for the environment."""

    name: str
    environ: dict[str, str]

    def activate(self) -> None:
        set_database_environment(self.environ)

    def new_environment(self, *, idle_ping_seconds: float | None = None) -> None:
        values = dict(self.environ)
        if idle_ping_seconds is not None:
            values["DB_IDLE_PING_SECONDS"] = str(idle_ping_seconds)
        set_database_environment(values)

    def engine(self) -> Engine:
        return lib_engine.get_engine()

    def api(self, event: dict[str, Any]) -> dict[str, Any]:
        from handlers.api import handler

        response: dict[str, Any] = handler(event, lambda_context())
        return response

    def scheduled(self, event: dict[str, Any]) -> dict[str, Any]:
        from handlers.scheduled import handler

        summary: dict[str, Any] = handler(event, lambda_context("PurgeFunction", 120_000))
        return summary

    def orm(self, unit: OrmUnit) -> Any:
        invocation.start(lambda_context())
        try:
            return run_in_session(unit.work, single_statement=unit.single_statement, read_only=unit.read_only)
        finally:
            invocation.finish()

    def close(self) -> None:
        lib_engine.dispose_engine()


@dataclass
class SeedProfile:
    """The seed app (devtools.bench.seed) on its own engine , stock pg8000 by default, lazily like the template."""

    name: str
    url: DatabaseUrl
    build: Callable[[DatabaseUrl], Engine] = create_seed_engine
    _engine: Engine | None = field(default=None, init=False)
    _handler: Handler | None = field(default=None, init=False)

    @classmethod
    def on(cls, name: str, url: str) -> SeedProfile:
        return cls(name, parse_database_url(url))

    @classmethod
    def psycopg(cls, name: str, url: str, *, pool: str, autocommit: bool = False) -> SeedProfile:
        """The same app on psycopg 3 (``postgresql+psycopg``)."""
        return cls(
            name,
            parse_database_url(url),
            lambda parsed: create_psycopg_engine(parsed, pool=pool, autocommit=autocommit),
        )

    def activate(self) -> None:
        self.new_environment()

    def new_environment(self, *, idle_ping_seconds: float | None = None) -> None:
        # pool_pre_ping pings on every checkout whatever the idle time: idle_ping_seconds has no equivalent.
        self.close()

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.build(self.url)
            self._handler = create_seed_handler(self._engine)
        return self._engine

    def api(self, event: dict[str, Any]) -> dict[str, Any]:
        self.engine()
        assert self._handler is not None
        return self._handler(event, lambda_context())

    def scheduled(self, event: dict[str, Any]) -> dict[str, Any]:
        return seed_purge(self.engine())

    def orm(self, unit: OrmUnit) -> Any:
        # A guide's unit of work: a Session per unit, begun and committed around the work.
        with Session(self.engine(), expire_on_commit=False) as session, session.begin():
            return unit.work(session)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None
        self._handler = None


class PingCounter:
    """Counts liveness pings (pre-ping or idle ping) of the pg8000 and psycopg dialects while installed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.active = threading.local()

    def hit(self) -> None:
        with self._lock:
            self.count += 1


@contextmanager
def counting_pings() -> Iterator[PingCounter]:
    """Wrap ``do_ping`` of the pg8000 and psycopg dialects and every subclass that overrides it; restored on exit."""
    counter = PingCounter()
    candidates = [
        *(base for dialect in (PGDialect_pg8000, PGDialect_psycopg) for base in dialect.__mro__),
        *_subclasses(PGDialect_pg8000),
        *_subclasses(PGDialect_psycopg),
    ]
    classes = [cls for cls in dict.fromkeys(candidates) if "do_ping" in vars(cls)]
    originals = {cls: vars(cls)["do_ping"] for cls in classes}

    def counted(original: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
        def do_ping(self: Any, dbapi_connection: Any) -> bool:
            # An override calling super() is still one ping.
            outermost = not getattr(counter.active, "inside", False)
            if outermost:
                counter.hit()
            counter.active.inside = True
            try:
                return original(self, dbapi_connection)
            finally:
                if outermost:
                    counter.active.inside = False

        return do_ping

    for cls, original in originals.items():
        setattr(cls, "do_ping", counted(original))  # noqa: B010 - cls is a plain type here
    try:
        yield counter
    finally:
        for cls, original in originals.items():
            setattr(cls, "do_ping", original)  # noqa: B010


def _subclasses(cls: type) -> list[type]:
    found: list[type] = [cls]
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        found.extend(_subclasses(sub))
    return found


class CapturedLogs(logging.Handler):
    """Keeps the SQLSTATEs the app logged (connect failures, unavailable database) instead of printing JSON lines."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lock_counts = threading.Lock()
        self.sqlstates: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        code = getattr(record, "sqlstate", None)
        if isinstance(code, str):
            with self._lock_counts:
                self.sqlstates[code] = self.sqlstates.get(code, 0) + 1


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


@contextmanager
def quiet_app_logs() -> Iterator[CapturedLogs]:
    """Silence the app's per-invocation JSON logs and EMF metrics (stdout) for the bench; capture logged SQLSTATEs."""
    captured = CapturedLogs()
    service_logger = logging.getLogger(logger.name)
    mangum_logger = logging.getLogger("mangum")
    saved = (service_logger.handlers[:], service_logger.level, mangum_logger.propagate, mangum_logger.handlers[:])
    service_logger.handlers = [captured]
    service_logger.setLevel(logging.WARNING)
    mangum_logger.handlers = [logging.NullHandler()]
    mangum_logger.propagate = False
    try:
        # Metrics are printed, not logged; POWERTOOLS_METRICS_DISABLED would not do: Powertools keeps collecting
        # and prints a batch at 100 values anyway.
        with warnings.catch_warnings(), contextlib.redirect_stdout(_Discard()):
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield captured
    finally:
        service_logger.handlers, level, mangum_logger.propagate, mangum_logger.handlers = saved
        service_logger.setLevel(level)
