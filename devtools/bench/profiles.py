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
from devtools.bench.seed import GuideEngines, create_psycopg_engine, create_seed_engine
from devtools.function_config import FunctionConfig
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

    def invoke(self, function: FunctionConfig, event: dict[str, Any]) -> Any:
        """Invoke a function of the template (its handler, imported by name) with an event; what it returns."""

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


def lambda_context(function: FunctionConfig) -> FakeLambdaContext:
    """The context Lambda would pass the function: its name and its timeout from template.yaml."""
    return FakeLambdaContext(function_name=function.logical_id, timeout_ms=function.timeout_seconds * 1000)


def invoke_handler(function: FunctionConfig, event: dict[str, Any]) -> Any:
    """The function's handler (template.yaml's Handler, imported by name as Lambda does) called with `event`."""
    return function.import_handler()(event, lambda_context(function))


@dataclass
class TemplateProfile:
    """The app's handlers (named in template.yaml) on whatever lib.dbkit.engine builds for the environment."""

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

    def invoke(self, function: FunctionConfig, event: dict[str, Any]) -> Any:
        return invoke_handler(function, event)

    def orm(self, unit: OrmUnit) -> Any:
        invocation.start(FakeLambdaContext())
        try:
            return run_in_session(unit.work, single_statement=unit.single_statement, read_only=unit.read_only)
        finally:
            invocation.finish()

    def close(self) -> None:
        lib_engine.dispose_engine()


@dataclass
class SeedProfile:
    """The app's handlers on a guide's engine (devtools.bench.seed: stock pg8000 by default), built lazily like the
    template's: every invocation runs in the profile's own execution environment (GuideEngines)."""

    name: str
    url: DatabaseUrl
    build: Callable[[DatabaseUrl], Engine] = create_seed_engine
    _environment: GuideEngines | None = field(default=None, init=False)

    @classmethod
    def on(cls, name: str, url: str) -> SeedProfile:
        return cls(name, parse_database_url(url))

    @classmethod
    def psycopg(cls, name: str, url: str, *, pool: str, autocommit: bool = False) -> SeedProfile:
        """The same on psycopg 3 (``postgresql+psycopg``)."""
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

    def _engines(self) -> GuideEngines:
        if self._environment is None:
            self._environment = GuideEngines(self.url, self.build)
        return self._environment

    def engine(self) -> Engine:
        return self._engines().engine()

    def invoke(self, function: FunctionConfig, event: dict[str, Any]) -> Any:
        with lib_engine.execution_environment(self._engines()):
            return invoke_handler(function, event)

    def orm(self, unit: OrmUnit) -> Any:
        # A guide's unit of work: a Session per unit, begun and committed around the work.
        with Session(self.engine(), expire_on_commit=False) as session, session.begin():
            return unit.work(session)

    def close(self) -> None:
        if self._environment is not None:
            self._environment.dispose()
        self._environment = None


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
