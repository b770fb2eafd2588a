"""Pooler validator: serverless functions must reach Postgres through a transaction pooler, migrations must not."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lib.dbkit.dsn import DatabaseUrl, is_neon_host
from lib.dbkit.errors import DirectConnectionRequiredError, InvalidSettingError, PoolerRequiredError

POOLER_HOSTS_VARIABLE = "DB_POOLER_HOSTS"
NEON_POOLER_SUFFIX = "-pooler"
NEON_ENDPOINT_PREFIX = "ep-"
CHANNEL_BINDING_ISSUE = "https://github.com/neondatabase/neon/issues/12897"


class HostKind(enum.Enum):
    """What a database host is, as far as configuration can tell."""

    NEON_POOLER = "Neon pooler"
    NEON_DIRECT = "Neon direct endpoint"
    LISTED_POOLER = f"pooler listed in {POOLER_HOSTS_VARIABLE}"
    OTHER = "not a known pooler"

    @property
    def is_pooler(self) -> bool:
        """True for hosts that are transaction poolers (the Neon warnings need it)."""
        return self in (HostKind.NEON_POOLER, HostKind.LISTED_POOLER)


@dataclass(frozen=True)
class PoolerHost:
    """One DB_POOLER_HOSTS entry: a host, optionally with a port (no port matches every port)."""

    host: str
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        """True when ``host:port`` is this entry (host names compare case-insensitively)."""
        return _normal(host) == self.host and self.port in (None, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def parse_pooler_hosts(value: str, *, variable: str = POOLER_HOSTS_VARIABLE) -> tuple[PoolerHost, ...]:
    """Parse a comma list of ``host`` / ``host:port`` / ``[ipv6]:port`` entries."""
    entries: list[PoolerHost] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry.startswith("["):
            host, _, after = entry[1:].partition("]")
            has_port, port_text = after.startswith(":"), after.removeprefix(":")
            valid_suffix = has_port or not after
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
            has_port, valid_suffix = True, True
        else:  # a bare name, or an IPv6 address without brackets (no port then)
            host, port_text, has_port, valid_suffix = entry, "", False, True
        port_ok = not has_port or (port_text.isdigit() and 0 < int(port_text) < 65536)
        if not host or not valid_suffix or not port_ok:
            raise InvalidSettingError(
                f"{variable} entry {entry!r} is not valid: expected host or host:port, comma-separated "
                "(e.g. pooler.internal:6432,[::1]:6432)"
            )
        entries.append(PoolerHost(_normal(host), int(port_text) if port_text else None))
    return tuple(entries)


def classify_host(host: str, port: int, pooler_hosts: tuple[PoolerHost, ...]) -> HostKind:
    """Neon hosts are known by their first label; any other host is a pooler only if listed."""
    if is_neon_host(host):
        return HostKind.NEON_POOLER if _first_label(host).endswith(NEON_POOLER_SUFFIX) else HostKind.NEON_DIRECT
    if any(entry.matches(host, port) for entry in pooler_hosts):
        return HostKind.LISTED_POOLER
    return HostKind.OTHER


def neon_pooled_host(host: str) -> str:
    """``ep-x.region.aws.neon.tech`` → ``ep-x-pooler.region.aws.neon.tech`` (unchanged if already pooled)."""
    label, dot, rest = _normal(host).partition(".")
    if label.endswith(NEON_POOLER_SUFFIX):
        return f"{label}{dot}{rest}"
    return f"{label}{NEON_POOLER_SUFFIX}{dot}{rest}"


def neon_direct_host(host: str) -> str:
    """``ep-x-pooler.region.aws.neon.tech`` → ``ep-x.region.aws.neon.tech`` (unchanged if already direct)."""
    label, dot, rest = _normal(host).partition(".")
    return f"{label.removesuffix(NEON_POOLER_SUFFIX)}{dot}{rest}"


def require_pooler(url: DatabaseUrl, pooler_hosts: tuple[PoolerHost, ...]) -> HostKind:
    """Serverless mode: refuse a host that is not a transaction pooler; the error names the pooled host."""
    kind = classify_host(url.host, url.port, pooler_hosts)
    if kind is HostKind.NEON_DIRECT:
        raise PoolerRequiredError(
            f"serverless mode needs Neon's connection pooler, but {url.host} is the direct endpoint: use the "
            f"pooled hostname {neon_pooled_host(url.host)} (the console's 'Connection pooling' string)"
        )
    if kind is HostKind.OTHER:
        raise PoolerRequiredError(
            f"serverless mode needs a transaction pooler, but {_host_port(url)} is not known to be one: add it to "
            f"{POOLER_HOSTS_VARIABLE} if it is a PgBouncer in transaction mode, or use the pooled URL"
        )
    return kind


def require_direct(url: DatabaseUrl, pooler_hosts: tuple[PoolerHost, ...]) -> HostKind:
    """Migration mode: refuse the pooler (DDL, session settings and advisory locks need one server session)."""
    kind = classify_host(url.host, url.port, pooler_hosts)
    if kind is HostKind.NEON_POOLER:
        raise DirectConnectionRequiredError(
            f"migration mode needs a direct connection, but {url.host} is Neon's pooler: use the direct "
            f"hostname {neon_direct_host(url.host)}"
        )
    if kind is HostKind.LISTED_POOLER:
        raise DirectConnectionRequiredError(
            f"migration mode needs a direct connection, but {_host_port(url)} is listed in "
            f"{POOLER_HOSTS_VARIABLE} as a pooler: use the direct URL, e.g. DIRECT_DATABASE_URL"
        )
    return kind


def endpoint_label(host: str) -> str | None:
    """The endpoint id Neon's proxy reads from this host name (its first label, -pooler kept), if it is Neon's.

    Neon hosts, and hosts named like them (``ep-…``, as the local Neon stand-in's), route by SNI.
    """
    label = _first_label(host)
    if is_neon_host(host) or (label.startswith(NEON_ENDPOINT_PREFIX) and "." in _normal(host)):
        return label
    return None


def connection_warnings(url: DatabaseUrl, kind: HostKind) -> tuple[str, ...]:
    """Settings that work today but fail on Neon in a way a test rarely shows; each names the fix."""
    warnings: list[str] = []
    if url.channel_binding == "require" and kind.is_pooler:
        warnings.append(
            "channel_binding=require on a pooled host: Neon's pooler does not wake a suspended compute for a client "
            f"that requires channel binding ({CHANNEL_BINDING_ISSUE}), and pg8000 cannot require it anyway: remove "
            "channel_binding=require from the pooled URL"
        )
    label = endpoint_label(url.host)
    if url.endpoint_id is not None and label is not None and url.endpoint_id != label:
        warnings.append(
            f"options endpoint={url.endpoint_id} contradicts the host, whose endpoint is {label}: Neon refuses the "
            "connection ('Inconsistent project name inferred from SNI'), comparing the names as they are; write "
            f"options=endpoint%3D{label} or leave the option out (pg8000 sends the host name as SNI)"
        )
    return tuple(warnings)


def _normal(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _first_label(host: str) -> str:
    return _normal(host).partition(".")[0]


def _host_port(url: DatabaseUrl) -> str:
    return str(PoolerHost(url.host, url.port))
