"""One settings object per execution environment, built from the environment and validated at init.

Importing this module is cheap: Powertools Parameters (and boto3 behind it) load only when the database URL
comes from Secrets Manager or SSM.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, cast, get_args

from lib.dbkit.dsn import (
    DEFAULT_CONNECT_TIMEOUT,
    DatabaseUrl,
    SslMode,
    choice,
    database_url_from_parts,
    is_neon_host,
    parse_database_url,
    require_verified_tls,
)
from lib.dbkit.errors import (
    ConfigError,
    DatabaseUrlSourceError,
    InvalidDatabaseUrlError,
    InvalidSettingError,
    MissingDatabaseUrlError,
)
from lib.dbkit.pooler import (
    HostKind,
    PoolerHost,
    classify_host,
    connection_warnings,
    parse_pooler_hosts,
    require_direct,
    require_pooler,
)

Mode = Literal["serverless", "server", "migration"]
AppEnv = Literal["development", "staging", "production"]
PoolProfile = Literal["tiny", "nullpool"]
Driver = Literal["pipeline", "stock"]
UrlSourceKind = Literal[
    "DATABASE_URL",
    "DATABASE_SECRET_ARN",
    "DATABASE_URL_PARAMETER",
    "DATABASE_READ_URL",
    "DATABASE_READ_SECRET_ARN",
    "DATABASE_READ_URL_PARAMETER",
    "argument",
]

MODES: tuple[str, ...] = get_args(Mode)
APP_ENVS: tuple[str, ...] = get_args(AppEnv)
POOL_PROFILES: tuple[str, ...] = get_args(PoolProfile)
DRIVERS: tuple[str, ...] = get_args(Driver)
URL_VARIABLES = ("DATABASE_URL", "DATABASE_SECRET_ARN", "DATABASE_URL_PARAMETER")
# The optional read replica's URL, in the same three forms (first set wins, in this order).
READ_URL_VARIABLES = ("DATABASE_READ_URL", "DATABASE_READ_SECRET_ARN", "DATABASE_READ_URL_PARAMETER")
_SECRET_KINDS = frozenset({"DATABASE_SECRET_ARN", "DATABASE_READ_SECRET_ARN"})
_PARAMETER_KINDS = frozenset({"DATABASE_URL_PARAMETER", "DATABASE_READ_URL_PARAMETER"})
# Every variable the settings read: the one list tools and tests clear or copy (a unit test keeps it complete).
DATABASE_VARIABLES = (
    *URL_VARIABLES,
    *READ_URL_VARIABLES,
    # Read by migrations only (Settings.for_migration): the direct URL, preferred to DATABASE_URL when both are set.
    "DIRECT_DATABASE_URL",
    "APP_ENV",
    "DB_CONNECT_TIMEOUT",
    "DB_DRIVER",
    "DB_IDLE_IN_TRANSACTION_TIMEOUT",
    "DB_IDLE_PING_SECONDS",
    "DB_LOCK_TIMEOUT",
    "DB_MODE",
    "DB_POOL",
    "DB_POOLER_HOSTS",
    "DB_POOL_PRE_PING",
    "DB_POOL_RECYCLE",
    "DB_POOL_TIMEOUT",
    "DB_REPLICA_CONNECT_BUDGET",
    "DB_REPLICA_MAX_LAG",
    "DB_SECRET_MAX_AGE",
    "DB_STATEMENT_TIMEOUT",
)

DEFAULT_SECRET_MAX_AGE = 300
DEFAULT_IDLE_PING_SECONDS = 60.0
DEFAULT_POOL_RECYCLE = 1800
# Server-side limits of a long-running server's transactions (Lambda derives them from the invocation's deadline).
DEFAULT_STATEMENT_TIMEOUT = 30.0
DEFAULT_LOCK_TIMEOUT = 10.0
DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT = 60.0
# How long a read-only unit may wait for the read replica to connect (a waking replica) before it runs on the
# primary; never more than half the invocation's remaining time (lib.dbkit.engine).
DEFAULT_REPLICA_CONNECT_BUDGET = 1.0
SERVERLESS_POOL_TIMEOUT = 5.0
SERVER_POOL_TIMEOUT = 30.0
# pool_size / max_overflow per APP_ENV for long-running servers.
SERVER_POOL_SIZES: Mapping[str, tuple[int, int]] = {
    "development": (2, 5),
    "staging": (5, 10),
    "production": (10, 20),
}
_NEGOTIATIONS = {
    "postgres": "postgres (SSLRequest, then TLS)",
    "direct": "direct (TLS first, ALPN postgresql: one round trip less per new connection)",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Keys of a JSON secret that carry libpq parameters (RDS-rotation style secrets keep these beside host/port).
_SECRET_PARAM_KEYS = (
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "options",
    "application_name",
    "channel_binding",
    "ssl_min_protocol_version",
    "sslnegotiation",
    "hostaddr",
)


class PoolKind(enum.Enum):
    """The SQLAlchemy pool class to use."""

    QUEUE = "QueuePool"
    NULLPOOL = "NullPool"


@dataclass(frozen=True, kw_only=True)
class PoolSettings:
    """Pool sizing and health-check policy (seconds throughout)."""

    profile: str
    kind: PoolKind
    pool_size: int
    max_overflow: int
    pool_timeout: float
    pool_recycle: int
    pool_pre_ping: bool
    idle_ping_seconds: float


@dataclass(frozen=True)
class UrlSource:
    """Where the database URL came from: the variable, and the secret ARN / parameter name (never its value)."""

    kind: UrlSourceKind
    reference: str | None = None
    max_age: int = DEFAULT_SECRET_MAX_AGE

    @property
    def from_secret_store(self) -> bool:
        """True when the URL lives in Secrets Manager or SSM (so it can rotate)."""
        return self.kind in _SECRET_KINDS or self.kind in _PARAMETER_KINDS

    def __str__(self) -> str:
        return self.kind if self.reference is None else f"{self.kind}={self.reference}"


@dataclass(frozen=True, kw_only=True)
class ReplicaSettings:
    """The optional read replica: its own validated settings (same mode, pool and limits), and how to use it."""

    settings: Settings
    # Seconds of replay lag beyond which a read-only unit runs on the primary instead (None: any lag is served).
    max_lag: float | None = None
    connect_budget: float = DEFAULT_REPLICA_CONNECT_BUDGET

    def describe(self) -> str:
        """One password-free line for the start-up log and the doctor."""
        database = self.settings.database
        lag = "any lag" if self.max_lag is None else f"max lag {self.max_lag:g}s"
        return (
            f"{database.redacted()} from {self.settings.source} ({self.settings.host_kind.value}); {lag}, "
            f"connect budget {self.connect_budget:g}s"
        )


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated configuration; construction runs the TLS policy and the pooler validator for the mode."""

    database: DatabaseUrl
    mode: Mode = "server"
    app_env: AppEnv = "development"
    pooler_hosts: tuple[PoolerHost, ...] = ()
    pool_profile: PoolProfile | None = None
    pool_timeout: float | None = None
    pool_recycle: int = DEFAULT_POOL_RECYCLE
    pool_pre_ping: bool | None = None
    idle_ping_seconds: float = DEFAULT_IDLE_PING_SECONDS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # pipeline: pg8000 with fewer round trips (lib.dbkit.pg_pipeline); stock: SQLAlchemy's own pg8000 dialect.
    driver: Driver = "pipeline"
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    idle_in_transaction_timeout: float = DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT
    source: UrlSource = UrlSource("argument")
    # The read replica, validated by the same rules (DATABASE_READ_URL & co.); None: every unit runs here.
    replica: ReplicaSettings | None = None
    # Set by validation: the sslmode the URL asked for when serverless policy raised it to verify-full.
    tls_upgraded_from: SslMode | None = field(init=False, default=None)
    host_kind: HostKind = field(init=False, default=HostKind.OTHER)
    # Set by validation: settings that work but fail on Neon in ways tests rarely show (the doctor prints them,
    # the engine logs them once).
    warnings: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if self.lock_timeout > self.statement_timeout:
            raise InvalidSettingError(
                f"DB_LOCK_TIMEOUT={self.lock_timeout:g} is longer than "
                f"DB_STATEMENT_TIMEOUT={self.statement_timeout:g}: a lock wait is part of its statement, "
                "so lower DB_LOCK_TIMEOUT or raise DB_STATEMENT_TIMEOUT"
            )
        database = self.database
        if database.connect_timeout is None:
            database = replace(database, connect_timeout=self.connect_timeout)
        if self.mode == "serverless":
            secured = require_verified_tls(database)
            if secured.sslmode != database.sslmode:
                object.__setattr__(self, "tls_upgraded_from", database.sslmode)
            database = secured
            if database.server_options:
                raise InvalidDatabaseUrlError(
                    f"options={database.server_options!r} cannot pass a transaction pooler (PgBouncer refuses "
                    "startup options); remove them and use SET LOCAL inside the transaction"
                )
            kind = require_pooler(database, self.pooler_hosts)
        elif self.mode == "migration":
            kind = require_direct(database, self.pooler_hosts)
        else:
            kind = classify_host(database.host, database.port, self.pooler_hosts)
        # Fails now, at init, when sslrootcert is missing or unreadable.
        database.ssl_context()
        object.__setattr__(self, "database", database)
        object.__setattr__(self, "host_kind", kind)
        object.__setattr__(self, "warnings", connection_warnings(database, kind))

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, force_fetch: bool = False) -> Settings:
        """Build settings from environment variables; ``force_fetch`` bypasses the secret cache."""
        # Plain variables first: a typo in DB_POOL fails without a Secrets Manager round trip.
        mode = _mode(environ)
        app_env = cast(AppEnv, _choice(environ, "APP_ENV", APP_ENVS) or "development")
        pool_profile = cast(PoolProfile | None, _choice(environ, "DB_POOL", POOL_PROFILES))
        pool_timeout = _number(environ, "DB_POOL_TIMEOUT", minimum=0.0, exclusive=True)
        pool_recycle = _number(environ, "DB_POOL_RECYCLE", minimum=-1, integer=True)
        idle_ping = _number(environ, "DB_IDLE_PING_SECONDS", minimum=0.0)
        connect_timeout = _number(environ, "DB_CONNECT_TIMEOUT", minimum=0.0, exclusive=True)
        driver = cast(Driver, _choice(environ, "DB_DRIVER", DRIVERS) or "pipeline")
        statement_timeout = _limit(environ, "DB_STATEMENT_TIMEOUT")
        lock_timeout = _limit(environ, "DB_LOCK_TIMEOUT")
        idle_timeout = _limit(environ, "DB_IDLE_IN_TRANSACTION_TIMEOUT")
        pooler_hosts = parse_pooler_hosts(environ.get("DB_POOLER_HOSTS", ""))
        max_lag = _number(environ, "DB_REPLICA_MAX_LAG", minimum=0.0)
        connect_budget = _number(environ, "DB_REPLICA_CONNECT_BUDGET", minimum=0.0, exclusive=True)
        max_age = _max_age(environ)
        source = _source(environ, URL_VARIABLES, max_age)
        if source is None:
            raise MissingDatabaseUrlError(
                "no database URL configured: set DATABASE_URL, or DATABASE_SECRET_ARN (Secrets Manager), "
                "or DATABASE_URL_PARAMETER (SSM SecureString)"
            )
        # Migrations never read from a replica: its variables are not even fetched.
        read_source = _source(environ, READ_URL_VARIABLES, max_age) if mode != "migration" else None
        database = _load_database(environ, source, force_fetch=force_fetch)
        read_database = _load_database(environ, read_source, force_fetch=force_fetch) if read_source else None
        shared: dict[str, Any] = {
            "mode": mode,
            "app_env": app_env,
            "pooler_hosts": pooler_hosts,
            "pool_profile": pool_profile,
            "pool_timeout": pool_timeout,
            "pool_recycle": int(_default(pool_recycle, DEFAULT_POOL_RECYCLE)),
            "pool_pre_ping": _flag(environ, "DB_POOL_PRE_PING"),
            "idle_ping_seconds": _default(idle_ping, DEFAULT_IDLE_PING_SECONDS),
            "connect_timeout": _default(connect_timeout, DEFAULT_CONNECT_TIMEOUT),
            "driver": driver,
            "statement_timeout": _default(statement_timeout, DEFAULT_STATEMENT_TIMEOUT),
            "lock_timeout": _default(lock_timeout, DEFAULT_LOCK_TIMEOUT),
            "idle_in_transaction_timeout": _default(idle_timeout, DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT),
        }
        replica = None
        if read_source is not None and read_database is not None:
            try:
                read_settings = cls(database=read_database, source=read_source, **shared)
            except ConfigError as error:
                # The same rules as the primary's URL; the message says which variable broke them.
                raise type(error)(f"{read_source}: {error}") from None
            replica = ReplicaSettings(
                settings=read_settings,
                max_lag=max_lag,
                connect_budget=_default(connect_budget, DEFAULT_REPLICA_CONNECT_BUDGET),
            )
        return cls(database=database, source=source, replica=replica, **shared)

    @classmethod
    def for_migration(cls, environ: Mapping[str, str]) -> Settings:
        """Settings for schema migrations: DIRECT_DATABASE_URL when set (else the URL variables), migration mode."""
        direct = _value(environ, "DIRECT_DATABASE_URL")
        if direct is not None:
            environ = {name: value for name, value in environ.items() if name not in URL_VARIABLES}
            environ["DATABASE_URL"] = direct
        return cls.from_env({**environ, "DB_MODE": "migration"})

    @property
    def url_from_secret_store(self) -> bool:
        """True when the URL comes from Secrets Manager / SSM and can be re-fetched after rotation."""
        return self.source.from_secret_store

    @property
    def pool(self) -> PoolSettings:
        """The pool profile: serverless tiny (1/0) or nullpool; servers sized by APP_ENV; migrations nullpool."""
        serverless = self.mode == "serverless"
        profile = self.pool_profile or {"serverless": "tiny", "migration": "nullpool"}.get(self.mode)
        if profile == "nullpool":
            kind, size, overflow = PoolKind.NULLPOOL, 0, 0
        elif profile == "tiny":
            kind, size, overflow = PoolKind.QUEUE, 1, 0
        else:
            profile = f"sized for {self.app_env}"
            kind, (size, overflow) = PoolKind.QUEUE, SERVER_POOL_SIZES[self.app_env]
        return PoolSettings(
            profile=profile,
            kind=kind,
            pool_size=size,
            max_overflow=overflow,
            pool_timeout=_default(self.pool_timeout, SERVERLESS_POOL_TIMEOUT if serverless else SERVER_POOL_TIMEOUT),
            pool_recycle=self.pool_recycle,
            # Serverless pings only after idle (engine), not on every checkout: one round trip saved per request.
            pool_pre_ping=self.pool_pre_ping if self.pool_pre_ping is not None else not serverless,
            idle_ping_seconds=self.idle_ping_seconds,
        )

    def describe(self) -> dict[str, str]:
        """Human-readable, password-free summary (for the doctor and a startup log line)."""
        database = self.database
        pool = self.pool
        tls: str = database.effective_sslmode
        if self.tls_upgraded_from is not None:
            tls += f" (upgraded from {self.tls_upgraded_from}: serverless mode verifies TLS)"
        if database.effective_sslmode != "disable":
            tls += f", CA {database.sslrootcert or 'system'}"
        at = f" at {database.hostaddr}" if database.hostaddr else ""
        pool_text = (
            f"{pool.profile}: {pool.kind.value} size={pool.pool_size} overflow={pool.max_overflow} "
            f"timeout={pool.pool_timeout:g}s recycle={pool.pool_recycle}s pre_ping={str(pool.pool_pre_ping).lower()} "
            f"idle_ping={pool.idle_ping_seconds:g}s"
        )
        summary = {
            "url": database.redacted(),
            "source": str(self.source),
            "mode": self.mode,
            "app env": self.app_env,
            "host": f"{database.host}:{database.port}{at} ({self.host_kind.value})",
            "tls": tls,
            "channel binding": f"{database.channel_binding} (pg8000 uses it when offered; cannot require it)",
            "tls negotiation": _NEGOTIATIONS[database.sslnegotiation],
            "connect timeout": f"{database.effective_connect_timeout:g}s",
            "pool": pool_text,
            "driver": self.driver,
            "server limits": (
                f"statement {self.statement_timeout:g}s, lock {self.lock_timeout:g}s, idle in transaction "
                f"{self.idle_in_transaction_timeout:g}s (server mode; in Lambda: the invocation's remaining time)"
            ),
        }
        if database.endpoint_id or is_neon_host(database.host):
            summary["endpoint id"] = database.endpoint_id or "from SNI (pg8000 sends the host name)"
        if database.ignored_params:
            summary["ignored parameters"] = ", ".join(database.ignored_params)
        if self.replica is not None:
            summary["read replica"] = self.replica.describe()
        return summary


def refresh_database_url(settings: Settings) -> Settings:
    """Re-fetch a secret-store URL bypassing the cache (after an auth failure: the secret may have rotated)."""
    if not settings.source.from_secret_store:
        return settings
    fresh = _fetch_database(settings.source, force_fetch=True)
    if fresh.connect_timeout is None:
        fresh = replace(fresh, connect_timeout=settings.connect_timeout)
    # The forced fetch refreshed the secret cache too, so settings rebuilt from now on see the rotated URL.
    get_settings.cache_clear()
    return replace(settings, database=fresh)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The execution environment's settings, read from ``os.environ`` once."""
    return Settings.from_env(os.environ)


def clear_settings() -> None:
    """Forget the cached settings: the next get_settings() reads ``os.environ`` again (tests, tools)."""
    get_settings.cache_clear()


_Number = TypeVar("_Number", int, float)


def _default(value: float | None, default: _Number) -> float | _Number:
    return default if value is None else value


def _value(environ: Mapping[str, str], name: str) -> str | None:
    # Unset and empty are the same: SAM passes empty strings for unset template parameters.
    value = environ.get(name, "").strip()
    return value or None


def _mode(environ: Mapping[str, str]) -> Mode:
    mode = _choice(environ, "DB_MODE", MODES)
    if mode is not None:
        return cast(Mode, mode)
    return "serverless" if _value(environ, "AWS_LAMBDA_FUNCTION_NAME") else "server"


def _choice(environ: Mapping[str, str], name: str, accepted: tuple[str, ...]) -> str | None:
    return choice(name, environ.get(name), accepted, error=InvalidSettingError)


def _number(
    environ: Mapping[str, str],
    name: str,
    *,
    minimum: float,
    exclusive: bool = False,
    integer: bool = False,
) -> float | None:
    value = _value(environ, name)
    if value is None:
        return None
    pattern = r"-?[0-9]+" if integer else r"-?[0-9]+(\.[0-9]+)?"
    number = float(value) if re.fullmatch(pattern, value) else None
    if number is None or number < minimum or (exclusive and number == minimum):
        bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
        kind = "a whole number of seconds" if integer else "a number of seconds"
        raise InvalidSettingError(f"{name}={value!r} is not valid: expected {kind} {bound}")
    return number


def _limit(environ: Mapping[str, str], name: str) -> float | None:
    """A server-side time limit in seconds: positive, at least a millisecond, and at most a day."""
    value = _value(environ, name)
    number = _number(environ, name, minimum=0.0, exclusive=True)
    if number is not None and not 0.001 <= number <= 86_400:
        raise InvalidSettingError(
            f"{name}={value!r} is not valid: expected a number of seconds from 0.001 to 86400 (the server cancels "
            "a statement after it; 0 would mean no limit, which a pooled server connection must not have)"
        )
    return number


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    value = _value(environ, name)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidSettingError(f"{name}={value!r} is not valid: expected true or false")


def _max_age(environ: Mapping[str, str]) -> int:
    # 0 is a real choice, "never cache" (every settings build fetches the secret), not "unset": test for None.
    return int(_default(_number(environ, "DB_SECRET_MAX_AGE", minimum=0, integer=True), DEFAULT_SECRET_MAX_AGE))


def _source(environ: Mapping[str, str], names: tuple[str, ...], max_age: int) -> UrlSource | None:
    """The first of `names` that is set: a URL variable (no reference), a secret ARN or a parameter name."""
    for name in names:
        value = _value(environ, name)
        if value is not None:
            reference = None if name in ("DATABASE_URL", "DATABASE_READ_URL") else value
            return UrlSource(cast(UrlSourceKind, name), reference, max_age)
    return None


def _load_database(environ: Mapping[str, str], source: UrlSource, *, force_fetch: bool) -> DatabaseUrl:
    if source.reference is None:
        return _decode(environ[source.kind].strip(), source)
    return _fetch_database(source, force_fetch=force_fetch)


def _fetch_database(source: UrlSource, *, force_fetch: bool) -> DatabaseUrl:
    assert source.reference is not None
    from aws_lambda_powertools.utilities import parameters
    from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]

    value: str | bytes
    try:
        if source.kind in _SECRET_KINDS:
            value = parameters.get_secret(source.reference, max_age=source.max_age, force_fetch=force_fetch)
        else:
            value = parameters.get_parameter(
                source.reference, decrypt=True, max_age=source.max_age, force_fetch=force_fetch
            )
    except (parameters.GetParameterError, BotoCoreError) as error:
        raise DatabaseUrlSourceError(f"{source}: could not fetch the database URL: {error}") from None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return _decode(value.strip(), source)


def _decode(value: str, source: UrlSource) -> DatabaseUrl:
    """A URL string, or JSON holding ``url``/``DATABASE_URL``, or RDS-style host/port/username/password fields."""
    try:
        if not value.startswith(("{", "[")):
            return parse_database_url(value)
        try:
            data = json.loads(value)
        except json.JSONDecodeError:
            raise DatabaseUrlSourceError(f"{source} holds malformed JSON") from None
        return _from_json(data, source)
    except InvalidDatabaseUrlError as error:
        raise type(error)(f"{source}: {error}") from None


def _from_json(data: Any, source: UrlSource) -> DatabaseUrl:
    if not isinstance(data, dict):
        raise DatabaseUrlSourceError(f"{source} holds JSON that is not an object")
    for key in ("url", "DATABASE_URL"):
        if isinstance(data.get(key), str):
            return parse_database_url(data[key])
    user = data.get("username", data.get("user"))
    host = data.get("host")
    if not isinstance(host, str) or not isinstance(user, str):
        raise DatabaseUrlSourceError(
            f"{source} holds JSON without 'url', 'DATABASE_URL', or 'host' and 'username' fields"
        )
    password = data.get("password")
    database = data.get("dbname", data.get("database"))
    port = data.get("port")
    if port is not None and not (isinstance(port, int) or (isinstance(port, str) and port.isdigit())):
        raise DatabaseUrlSourceError(f"{source} holds a 'port' that is not a number")
    params = {key: str(data[key]) for key in _SECRET_PARAM_KEYS if data.get(key) is not None}
    endpoint = data.get("endpoint")
    if isinstance(endpoint, str) and endpoint:
        params["options"] = f"endpoint={endpoint} {params.get('options', '')}".strip()
    return database_url_from_parts(
        host=host,
        port=int(port) if port is not None else None,
        user=user,
        password=password if isinstance(password, str) else None,
        database=database if isinstance(database, str) else None,
        params=params,
    )
