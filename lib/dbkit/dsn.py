"""Neon console connection strings: parse them as they are, hide the password, and derive pg8000 arguments.

Query parameters never reach pg8000 (its SQLAlchemy dialect would pass them verbatim and crash): the ones we
understand become fields; libpq parameters whose pg8000 behaviour is the same or stricter are dropped and
listed in ``ignored_params``; every other parameter is refused, so a setting is never silently lost.

TLS follows libpq's sslmode, with one deliberate difference: we never fall back to plaintext (pg8000 with an
explicit ``SSLContext`` fails with "Server refuses SSL" instead), so allow/prefer behave like require.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Required, TypedDict, TypeVar, cast, get_args
from urllib.parse import quote, unquote

from lib.dbkit.errors import ConfigError, InsecureTransportError, InvalidDatabaseUrlError, SslRootCertError

if TYPE_CHECKING:
    from sqlalchemy import URL

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
ChannelBinding = Literal["disable", "prefer", "require"]
SslNegotiation = Literal["postgres", "direct"]
TlsVersionName = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]

SSL_MODES: tuple[str, ...] = get_args(SslMode)
CHANNEL_BINDINGS: tuple[str, ...] = get_args(ChannelBinding)
SSL_NEGOTIATIONS: tuple[str, ...] = get_args(SslNegotiation)
# The ALPN protocol name PostgreSQL 17+ (and Neon's proxy) expect with direct TLS.
POSTGRES_ALPN = "postgresql"
TLS_VERSION_NAMES: tuple[str, ...] = get_args(TlsVersionName)
SYSTEM_ROOT_CERT = "system"
DEFAULT_PORT = 5432
DEFAULT_CONNECT_TIMEOUT = 10.0
NEON_DOMAIN = ".neon.tech"
# libpq treats connect_timeout=1 as 2 (a one-second timeout races the first SYN retransmit).
LIBPQ_MIN_CONNECT_TIMEOUT = 2

_Choice = TypeVar("_Choice", bound=str)
_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+pg8000"})
_UNVERIFIED_MODES = frozenset({"allow", "prefer", "require"})
_TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_HANDLED_PARAMS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "connect_timeout",
        "options",
        "application_name",
        "fallback_application_name",
        "channel_binding",
        "ssl_min_protocol_version",
        "hostaddr",
        "sslnegotiation",
    }
)
# Dropped whatever their value: pg8000 already does the same, or the setting cannot matter for one TCP host.
_IGNORED_PARAMS = frozenset(
    {
        "keepalives",  # pg8000 turns SO_KEEPALIVE on
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",  # the pg8000 socket timeout bounds every read and write instead
        "sslcompression",  # OpenSSL builds have compression off; libpq ignores it too
        "sslsni",  # pg8000 always sends SNI for host names, which Neon needs
        "load_balance_hosts",  # one host only
    }
)
# Dropped only with values that match what pg8000 does anyway; other values are refused.
_VALUE_GATED_PARAMS: Mapping[str, frozenset[str]] = {
    "gssencmode": frozenset({"disable", "prefer"}),  # pg8000 never uses GSSAPI encryption
    "client_encoding": frozenset({"utf8", "utf-8", "unicode", "auto"}),  # pg8000 always uses UTF8
    "target_session_attrs": frozenset({"any"}),  # pg8000 does not check the server role
}
_LIBPQ_UNSUPPORTED = frozenset(
    {
        "host",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcertmode",
        "sslcrl",
        "sslcrldir",
        "sslkeylogfile",
        "ssl_max_protocol_version",
        "requirepeer",
        "requiressl",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "replication",
        "min_protocol_version",
        "max_protocol_version",
        "scram_client_key",
        "scram_server_key",
        "oauth_issuer",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_scope",
    }
)
_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
_ENDPOINT_ID = re.compile(r"[A-Za-z0-9-]+\Z")
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_ENCODE_HINT = "if the password has / ? # @ or :, percent-encode them as %2F %3F %23 %40 %3A"


class Pg8000ConnectArgs(TypedDict, total=False):
    """Keyword arguments for ``pg8000.dbapi.connect``; holds the password, so never log it."""

    user: Required[str]
    password: str | None
    host: Required[str]
    port: Required[int]
    database: str | None
    ssl_context: Required[ssl.SSLContext | Literal[False]]
    timeout: Required[float]
    application_name: str
    startup_params: dict[str, str]
    # Understood by lib.pg_pipeline.connect only (plain pg8000 does not take them); present only when set.
    hostaddr: str
    sslnegotiation: SslNegotiation


@dataclass(frozen=True, kw_only=True)
class DatabaseUrl:
    """A parsed Postgres URL; the password is kept out of repr/str, use ``redacted()`` to show it."""

    host: str
    hostaddr: str | None = None
    port: int = DEFAULT_PORT
    user: str
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    sslmode: SslMode = "prefer"
    sslrootcert: str | None = None
    connect_timeout: float | None = None
    endpoint_id: str | None = None
    server_options: str | None = None
    application_name: str | None = None
    channel_binding: ChannelBinding = "prefer"
    ssl_min_protocol_version: TlsVersionName = "TLSv1.2"
    sslnegotiation: SslNegotiation = "postgres"
    ignored_params: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.redacted()

    @property
    def effective_sslmode(self) -> SslMode:
        """The sslmode libpq would apply: a given sslrootcert file makes allow/prefer/require verify the chain."""
        if self.sslmode in _UNVERIFIED_MODES and self.sslrootcert is not None:
            return "verify-ca"
        return self.sslmode

    @property
    def effective_connect_timeout(self) -> float:
        """Seconds allowed for connecting: the URL's connect_timeout, else Neon's recommended 10."""
        return self.connect_timeout if self.connect_timeout is not None else DEFAULT_CONNECT_TIMEOUT

    @property
    def verifies_server(self) -> bool:
        """True when TLS proves the server's identity: hostname checked, or a chain to a private CA file."""
        mode = self.effective_sslmode
        if mode == "verify-full":
            return True
        # verify-ca against the public system store accepts any publicly trusted certificate: no proof at all.
        return mode == "verify-ca" and self.sslrootcert not in (None, SYSTEM_ROOT_CERT)

    @property
    def startup_options(self) -> str | None:
        """The ``options`` startup parameter: Neon's ``endpoint=<id>`` first, then any server options."""
        parts = [f"endpoint={self.endpoint_id}" if self.endpoint_id else "", self.server_options or ""]
        joined = " ".join(part for part in parts if part)
        return joined or None

    def with_sslmode(self, sslmode: SslMode) -> DatabaseUrl:
        """A copy with another sslmode (the TLS policy uses it to upgrade Neon URLs)."""
        return replace(self, sslmode=sslmode)

    def ssl_context(self) -> ssl.SSLContext | Literal[False]:
        """The pg8000 ``ssl_context``: ``False`` only for sslmode=disable, never ``None`` (silent plaintext)."""
        mode = self.effective_sslmode
        if mode == "disable":
            return False
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = _TLS_VERSIONS[self.ssl_min_protocol_version]
        if self.sslnegotiation == "direct":
            context.set_alpn_protocols([POSTGRES_ALPN])
        if mode in _UNVERIFIED_MODES:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        self._load_root_certs(context)
        context.check_hostname = mode == "verify-full"
        return context

    def connect_args(self, *, timeout: float | None = None) -> Pg8000ConnectArgs:
        """``pg8000.dbapi.connect`` arguments; ``timeout`` (seconds) defaults to ``effective_connect_timeout``.

        pg8000's timeout is a socket timeout for the connection's whole life: reset it after connecting.
        """
        args: Pg8000ConnectArgs = {
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "ssl_context": self.ssl_context(),
            "timeout": self.effective_connect_timeout if timeout is None else timeout,
        }
        if self.application_name:
            args["application_name"] = self.application_name
        options = self.startup_options
        if options:
            args["startup_params"] = {"options": options}
        if self.hostaddr is not None:
            args["hostaddr"] = self.hostaddr
        if self.sslnegotiation != "postgres":
            args["sslnegotiation"] = self.sslnegotiation
        return args

    def sqlalchemy_url(self) -> URL:
        """A ``postgresql+pg8000`` URL without query parameters (those travel in ``connect_args``)."""
        from sqlalchemy import URL

        return URL.create(
            "postgresql+pg8000",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
        )

    def redacted(self) -> str:
        """The normalised URL with the password shown as ``****``."""
        userinfo = quote(self.user, safe="")
        if self.password is not None:
            userinfo += ":****"
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = quote(self.database, safe="") if self.database is not None else ""
        query: list[tuple[str, str]] = [("sslmode", self.sslmode)]
        if self.hostaddr is not None:
            query.insert(0, ("hostaddr", self.hostaddr))
        if self.sslnegotiation != "postgres":
            query.append(("sslnegotiation", self.sslnegotiation))
        if self.sslrootcert is not None:
            query.append(("sslrootcert", self.sslrootcert))
        if self.ssl_min_protocol_version != "TLSv1.2":
            query.append(("ssl_min_protocol_version", self.ssl_min_protocol_version))
        if self.channel_binding != "prefer":
            query.append(("channel_binding", self.channel_binding))
        if self.connect_timeout is not None:
            query.append(("connect_timeout", f"{self.connect_timeout:g}"))
        if self.startup_options:
            query.append(("options", self.startup_options))
        if self.application_name:
            query.append(("application_name", self.application_name))
        rendered = "&".join(f"{name}={quote(value, safe='/')}" for name, value in query)
        return f"postgresql://{userinfo}@{host}:{self.port}/{path}?{rendered}"

    def _load_root_certs(self, context: ssl.SSLContext) -> None:
        if self.sslrootcert in (None, SYSTEM_ROOT_CERT):
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
            return
        path = str(self.sslrootcert)
        if not os.path.isfile(path):
            raise SslRootCertError(f"sslrootcert file not found: {path} (give an existing CA file, or 'system')")
        try:
            context.load_verify_locations(cafile=path)
        except ssl.SSLError:
            raise SslRootCertError(f"sslrootcert file {path} holds no usable PEM CA certificate") from None


def is_neon_host(host: str) -> bool:
    """True for Neon endpoint hostnames (``*.neon.tech``)."""
    return host.lower().rstrip(".").endswith(NEON_DOMAIN)


def require_verified_tls(url: DatabaseUrl) -> DatabaseUrl:
    """Serverless TLS policy: Neon hosts are upgraded to verify-full against system CAs; others must verify."""
    if url.verifies_server:
        return url
    if url.sslmode == "disable":
        raise InsecureTransportError(
            "sslmode=disable is refused in serverless mode: use sslmode=verify-full in the database URL"
        )
    if is_neon_host(url.host):
        return url.with_sslmode("verify-full")
    raise InsecureTransportError(
        f"sslmode={url.sslmode} on {url.host} does not verify the server certificate, which serverless mode "
        "requires: use sslmode=verify-full&sslrootcert=<CA file, or 'system'> in the database URL"
    )


def parse_database_url(url: str) -> DatabaseUrl:
    """Parse a ``postgresql://`` / ``postgres://`` / ``postgresql+pg8000://`` URL as the Neon console gives it."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator or scheme.lower() not in _SCHEMES:
        shown = f" (got {scheme!r})" if separator and re.fullmatch(r"[A-Za-z0-9+.-]{1,30}", scheme) else ""
        raise InvalidDatabaseUrlError(f"the database URL must start with postgresql:// or postgres://{shown}")
    if "#" in rest:
        raise InvalidDatabaseUrlError(f"the database URL contains '#': {_ENCODE_HINT}")
    authority_path, _, query = rest.partition("?")
    # libpq's structure: the authority ends at the first '/', so an unencoded '/' in a password is an error.
    authority, _, path = authority_path.partition("/")
    if "@" not in authority:
        raise InvalidDatabaseUrlError(f"the database URL has no user@ part; {_ENCODE_HINT}")
    if "@" in path or "/" in path:
        raise InvalidDatabaseUrlError(f"the database name contains '@' or '/': {_ENCODE_HINT}")
    if authority.rpartition("@")[2].startswith("[") and "]" not in authority.rpartition("@")[2]:
        raise InvalidDatabaseUrlError("the database URL has an unclosed '[' in its host")
    # SQLAlchemy tokenises user, password, host, port and database; the query stays ours, because make_url's
    # parse_qsl turns '+' into a space where libpq keeps it.
    parts = _tokenise(f"postgresql://{authority_path}")
    if parts is None:
        # make_url's own message may quote a piece of the password: never chain or echo it.
        raise InvalidDatabaseUrlError(f"the database URL host or port is malformed; {_ENCODE_HINT}")
    host = unquote(parts.host or "")
    if host and not (_HOST_NAME.match(host) or host.startswith("/") or "," in host or _is_ipv6(host)):
        raise InvalidDatabaseUrlError(f"the database URL host is malformed; {_ENCODE_HINT}")
    database = parts.database
    return database_url_from_parts(
        host=host,
        port=parts.port,
        user=parts.username or "",
        password=parts.password if isinstance(parts.password, str) else None,
        database=database or None,
        params=_parse_query(query),
    )


def _tokenise(url: str) -> URL | None:
    from sqlalchemy.engine import make_url  # here: importing the settings stays free of SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ValueError, ArgumentError):
        return None


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def database_url_from_parts(
    *,
    host: str,
    port: int | None,
    user: str,
    password: str | None,
    database: str | None,
    params: Mapping[str, str],
) -> DatabaseUrl:
    """Build a DatabaseUrl from separate fields plus libpq-style parameters (secrets in RDS JSON form use this)."""
    host = host.strip().lower()
    if not host:
        raise InvalidDatabaseUrlError("the database URL has no host")
    if host.startswith("/"):
        raise InvalidDatabaseUrlError("unix-socket hosts are not supported: give a TCP host name")
    if "," in host:
        raise InvalidDatabaseUrlError("the database URL lists several hosts: give exactly one")
    if not user:
        raise InvalidDatabaseUrlError("the database URL has no user name")
    if port is not None and not 0 < port < 65536:
        raise InvalidDatabaseUrlError("the database URL port must be between 1 and 65535")
    _check_params(params)
    sslmode = _sslmode(params)
    sslnegotiation = _sslnegotiation(params, sslmode)
    endpoint_id, server_options = _parse_options(params.get("options"))
    present = set(params)
    return DatabaseUrl(
        host=host,
        hostaddr=_hostaddr(params.get("hostaddr")),
        port=port or DEFAULT_PORT,
        user=user,
        password=password,
        database=database,
        sslmode=sslmode,
        sslrootcert=params.get("sslrootcert") or None,
        connect_timeout=_connect_timeout(params.get("connect_timeout")),
        endpoint_id=endpoint_id,
        server_options=server_options,
        application_name=params.get("application_name") or params.get("fallback_application_name") or None,
        channel_binding=_choice(params, "channel_binding", CHANNEL_BINDINGS, "prefer"),
        ssl_min_protocol_version=_choice(params, "ssl_min_protocol_version", TLS_VERSION_NAMES, "TLSv1.2"),
        sslnegotiation=sslnegotiation,
        ignored_params=tuple(sorted(present & (_IGNORED_PARAMS | _VALUE_GATED_PARAMS.keys()))),
    )


def _parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for piece in query.split("&"):
        if not piece:
            continue
        raw_name, equals, raw_value = piece.partition("=")
        # unquote, not unquote_plus: libpq keeps '+' literally in URI parameters.
        name = unquote(raw_name)
        if not equals:
            raise InvalidDatabaseUrlError(f"the database URL parameter {_shown(name)} has no '=value'")
        if name in params:
            raise InvalidDatabaseUrlError(f"the database URL repeats the parameter {_shown(name)}")
        params[name] = unquote(raw_value)
    return params


def _shown(name: str) -> str:
    # A name that is not an identifier may be a piece of an unencoded password.
    return repr(name) if _PARAM_NAME.match(name) else f"<name not shown; {_ENCODE_HINT}>"


def _check_params(params: Mapping[str, str]) -> None:
    unsupported = sorted(name for name in params if name in _LIBPQ_UNSUPPORTED)
    gated = sorted(
        name
        for name, accepted in _VALUE_GATED_PARAMS.items()
        if name in params and params[name].strip().lower() not in accepted
    )
    known = _HANDLED_PARAMS | _IGNORED_PARAMS | _VALUE_GATED_PARAMS.keys() | _LIBPQ_UNSUPPORTED
    unknown = sorted(name for name in params if name not in known)
    problems: list[str] = []
    if unsupported:
        problems.append(f"libpq parameters pg8000 cannot honour: {', '.join(unsupported)} (remove them)")
    for name in gated:
        accepted = ", ".join(sorted(_VALUE_GATED_PARAMS[name]))
        problems.append(f"{name}={params[name]!r} cannot be honoured by pg8000 (accepted: {accepted})")
    if unknown:
        problems.append(f"unknown parameters: {', '.join(_shown(name) for name in unknown)} (check the spelling)")
    if problems:
        raise InvalidDatabaseUrlError("the database URL has " + "; ".join(problems))


def choice(name: str, value: str | None, accepted: tuple[str, ...], *, error: type[ConfigError]) -> str | None:
    """`value` as spelled in `accepted` (matched ignoring case and surrounding space); None when unset or empty."""
    normal = (value or "").strip().lower()
    if not normal:
        return None
    spelled = {option.lower(): option for option in accepted}.get(normal)
    if spelled is None:
        raise error(f"{name}={value!r} is not valid: expected one of {', '.join(accepted)}")
    return spelled


def _choice(params: Mapping[str, str], name: str, accepted: tuple[str, ...], default: _Choice) -> _Choice:
    return cast(_Choice, choice(name, params.get(name), accepted, error=InvalidDatabaseUrlError) or default)


def _sslmode(params: Mapping[str, str]) -> SslMode:
    rootcert = params.get("sslrootcert")
    given = params.get("sslmode")
    # libpq: sslrootcert=system defaults to verify-full and refuses anything weaker.
    if rootcert == SYSTEM_ROOT_CERT and given not in (None, "verify-full"):
        raise InvalidDatabaseUrlError(
            f"sslmode={given} cannot be used with sslrootcert=system: use sslmode=verify-full (as libpq requires)"
        )
    default: SslMode = "verify-full" if rootcert == SYSTEM_ROOT_CERT else "prefer"
    return _choice(params, "sslmode", SSL_MODES, default)


def _sslnegotiation(params: Mapping[str, str], sslmode: SslMode) -> SslNegotiation:
    negotiation: SslNegotiation = _choice(params, "sslnegotiation", SSL_NEGOTIATIONS, "postgres")
    # libpq: direct TLS cannot fall back to plaintext, so it refuses the sslmodes that allow plaintext.
    if negotiation == "direct" and sslmode in ("disable", "allow", "prefer"):
        raise InvalidDatabaseUrlError(
            f"sslnegotiation=direct cannot be used with sslmode={sslmode}: use sslmode=verify-full (or require)"
        )
    return negotiation


def _hostaddr(value: str | None) -> str | None:
    """libpq's hostaddr: the numeric address to connect to, while TLS (SNI, verification) uses the host name."""
    if value is None or not value.strip():
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise InvalidDatabaseUrlError(
            f"hostaddr={value!r} is not an IP address: give a numeric address (the host name goes in the host part)"
        ) from None


def _connect_timeout(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip()
    if not re.fullmatch(r"-?[0-9]{1,9}", text):
        raise InvalidDatabaseUrlError(f"connect_timeout={value!r} is not valid: expected whole seconds, e.g. 10")
    seconds = int(text)
    if seconds <= 0:
        # libpq reads 0 as "wait forever"; a function would then hang until its own timeout.
        raise InvalidDatabaseUrlError(
            f"connect_timeout={value!r} is refused: waiting forever is not allowed, give seconds > 0 (Neon: 10-15)"
        )
    return float(max(seconds, LIBPQ_MIN_CONNECT_TIMEOUT))


def _parse_options(value: str | None) -> tuple[str | None, str | None]:
    """Split libpq ``options`` into Neon's endpoint id (``endpoint=`` or legacy ``project=``) and the rest."""
    if value is None:
        return None, None
    endpoints: list[str] = []
    rest: list[str] = []
    for token in value.split():
        key, equals, ident = token.partition("=")
        if equals and key in ("endpoint", "project"):
            if not _ENDPOINT_ID.match(ident):
                raise InvalidDatabaseUrlError(
                    f"options={token!r} is not a valid Neon endpoint id: expected e.g. endpoint=ep-cool-darkness-123456"
                )
            endpoints.append(ident)
        elif equals and key.lstrip("-") in ("endpoint", "project"):
            raise InvalidDatabaseUrlError(
                f"options={token!r} is not understood by Neon: write options=endpoint%3D<endpoint-id> (no dashes)"
            )
        else:
            rest.append(token)
    if len(set(endpoints)) > 1:
        raise InvalidDatabaseUrlError("the database URL options name more than one Neon endpoint: keep one")
    return (endpoints[0] if endpoints else None), (" ".join(rest) or None)
