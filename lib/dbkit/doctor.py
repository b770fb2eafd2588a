"""Connection doctor: ``python -m lib.dbkit.doctor [URL] [--mode M] [--offline] [--pooler-hosts h:p,...]``.

Prints the normalised, redacted settings and a verdict. Exit status: 0 accepted, 2 refused by configuration
(the message names the fix), 1 unreachable. Without a URL it resolves the database URL the way the app does
(DATABASE_URL, DATABASE_SECRET_ARN, DATABASE_URL_PARAMETER).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import ssl
import statistics
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

import pg8000.dbapi

from lib.dbkit import pg8000_internals, transport
from lib.dbkit.dsn import DatabaseUrl, parse_database_url
from lib.dbkit.errors import ConfigError, DatabaseProviderRefusedError
from lib.dbkit.pg_errors import describe, final_connect_error
from lib.dbkit.settings import MODES, Settings

EXIT_ACCEPTED = 0
EXIT_UNREACHABLE = 1
EXIT_REFUSED = 2
RTT_SAMPLES = 5
SSL_REQUEST = struct.pack("!II", 8, 80877103)
DESCRIPTION = "Check a database URL against the template's rules and, unless --offline, probe the server."


@dataclass(frozen=True)
class Negotiation:
    """Which TLS negotiations the server accepts (None: could not tell)."""

    sslrequest: bool | None
    direct: bool | None


@dataclass(frozen=True)
class Probe:
    """What a live connection showed."""

    tls_version: str | None
    sni_sent: bool
    auth_mechanism: str | None
    server_version: str
    backend_pids: tuple[int, int]
    rtt_ms: float

    @property
    def transaction_pooled(self) -> bool:
        """Two clients, one after the other, served by one backend: a transaction (or statement) pooler."""
        return self.backend_pids[0] == self.backend_pids[1]


def main(
    argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None, out: TextIO | None = None
) -> int:
    """Run the doctor; returns the exit status."""
    args = _parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    stream = sys.stdout if out is None else out
    if args.url:
        env["DATABASE_URL"] = args.url
    env["DB_MODE"] = args.mode or env.get("DB_MODE") or "serverless"
    if args.pooler_hosts is not None:
        env["DB_POOLER_HOSTS"] = args.pooler_hosts
    try:
        settings = Settings.from_env(env)
    except ConfigError as error:
        _refused(stream, env, error)
        return EXIT_REFUSED
    for key, value in settings.describe().items():
        _line(stream, key, value)
    _line(stream, "configuration", "accepted")
    for warning in settings.warnings:
        _line(stream, "warning", warning)
    if args.offline:
        _line(stream, "verdict", "accepted (offline: not connected)")
        return EXIT_ACCEPTED
    _report_negotiation(stream, settings.database, probe_negotiation(settings.database))
    try:
        probe = run_probe(settings)
    except (OSError, ConfigError, pg8000.dbapi.Error) as error:
        final = error if isinstance(error, ConfigError) else final_connect_error(error)
        if isinstance(final, DatabaseProviderRefusedError):
            _line(stream, "verdict", f"unavailable: {final}; to fix it: {final.action}")
            return EXIT_UNREACHABLE
        if final is not None:
            _line(stream, "verdict", f"refused: {final}")
            return EXIT_REFUSED
        _line(stream, "verdict", f"unreachable: {type(error).__name__}: {describe(error)}")
        return EXIT_UNREACHABLE
    _report(stream, settings, probe)
    _line(stream, "verdict", "accepted")
    return EXIT_ACCEPTED


def run_probe(settings: Settings) -> Probe:
    """Connect twice with pg8000 (no pool) and measure what the server and the path in between do."""
    kwargs = settings.database.connect_args()
    first = transport.connect(pg8000.dbapi.Connection, **kwargs)
    try:
        first_pid, server_version = _backend(first, "select pg_backend_pid(), current_setting('server_version')")
        # The first client stays connected: only a pooler can hand its (now idle) server to the second client.
        second = transport.connect(pg8000.dbapi.Connection, **kwargs)
        try:
            second_pid, _ = _backend(second, "select pg_backend_pid(), ''")
        finally:
            second.close()
        rtt_ms = _round_trip_ms(first)
        sock = pg8000_internals.raw_socket(first)
        tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        auth = getattr(first, "auth", None)
        return Probe(
            tls_version=tls_version,
            sni_sent=tls_version is not None and not _is_ip_literal(settings.database.host),
            auth_mechanism=getattr(auth, "mechanism_name", None),
            server_version=server_version,
            backend_pids=(first_pid, second_pid),
            rtt_ms=rtt_ms,
        )
    finally:
        first.close()


def probe_negotiation(database: DatabaseUrl) -> Negotiation:
    """Ask the server for TLS both ways, without logging in: SSLRequest, and TLS first with ALPN ``postgresql``."""
    if database.effective_sslmode == "disable":
        return Negotiation(sslrequest=None, direct=None)
    return Negotiation(sslrequest=_accepts_sslrequest(database), direct=_accepts_direct_tls(database))


def _open(database: DatabaseUrl) -> Any:
    timeout = database.effective_connect_timeout
    return transport.open_socket(database.host, database.port, timeout=timeout, hostaddr=database.hostaddr)


def _accepts_sslrequest(database: DatabaseUrl) -> bool | None:
    try:
        with _open(database) as sock:
            sock.sendall(SSL_REQUEST)
            return bool(sock.recv(1) == b"S")
    except (OSError, pg8000.dbapi.InterfaceError):
        return None


def _accepts_direct_tls(database: DatabaseUrl) -> bool | None:
    context = replace(database, sslnegotiation="direct").ssl_context()
    try:
        sock = _open(database)
    except (OSError, pg8000.dbapi.InterfaceError):
        return None
    try:
        with contextlib.closing(transport.direct_tls(sock, context, database.host)):
            return True
    except ssl.SSLCertVerificationError:
        return None  # the TLS verdict below names the certificate problem
    except (OSError, ConfigError):
        # Not TLS back, or the connection closed on a ClientHello it read as a startup packet.
        return False
    finally:
        sock.close()


def _report_negotiation(stream: TextIO, database: DatabaseUrl, negotiation: Negotiation) -> None:
    def answer(accepted: bool | None) -> str:
        return {True: "yes", False: "no", None: "could not tell"}[accepted]

    _line(
        stream,
        "server accepts",
        f"SSLRequest {answer(negotiation.sslrequest)}, direct TLS (ALPN postgresql) {answer(negotiation.direct)}",
    )
    if database.sslnegotiation == "postgres" and negotiation.direct:
        _line(stream, "hint", "add sslnegotiation=direct to the URL: one round trip less per new connection")


def _backend(connection: Any, sql: str) -> tuple[int, str]:
    cursor = connection.cursor()
    cursor.execute(sql)
    pid, version = cursor.fetchone()
    connection.commit()
    return int(pid), str(version)


def _round_trip_ms(connection: Any) -> float:
    cursor = connection.cursor()
    # Inside one transaction (pg8000's default), so a pooler keeps the same server for every sample.
    cursor.execute("select 1")
    cursor.fetchall()
    samples = []
    for _ in range(RTT_SAMPLES):
        started = time.perf_counter()
        cursor.execute("select 1")
        cursor.fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    connection.commit()
    return statistics.median(samples)


def _report(stream: TextIO, settings: Settings, probe: Probe) -> None:
    database = settings.database
    _line(stream, "tls version", probe.tls_version or "none (plaintext)")
    if probe.sni_sent:
        _line(stream, "sni sent", f"yes ({database.host})")
    else:
        reason = "no TLS" if probe.tls_version is None else "IP literal host"
        _line(stream, "sni sent", f"no ({reason})")
    mechanism = probe.auth_mechanism or "not SCRAM"
    binding = "used" if mechanism.endswith("-PLUS") else "not used"
    _line(stream, "authentication", f"{mechanism} (channel binding {binding})")
    _line(stream, "server version", probe.server_version)
    pids = f"backend pids {probe.backend_pids[0]}, {probe.backend_pids[1]}"
    pooled = "yes" if probe.transaction_pooled else "no"
    _line(stream, "transaction pooler", f"{pooled} ({pids})")
    _line(stream, "round trip", f"{probe.rtt_ms:.2f} ms (median of {RTT_SAMPLES} 'select 1')")
    if database.channel_binding == "require" and binding == "not used":
        _line(stream, "warning", "channel_binding=require, but the server did not offer SCRAM-SHA-256-PLUS")
    if settings.mode == "serverless" and not probe.transaction_pooled:
        _line(stream, "warning", "serverless mode expects a transaction pooler, but two clients got two backends")
    if settings.mode == "migration" and probe.transaction_pooled:
        _line(stream, "warning", "migration mode expects a direct connection, but two clients shared one backend")


def _refused(stream: TextIO, env: Mapping[str, str], error: ConfigError) -> None:
    url = env.get("DATABASE_URL")
    if url:
        try:
            _line(stream, "url", parse_database_url(url).redacted())
        except ConfigError:
            _line(stream, "url", "(not parseable)")
    _line(stream, "mode", env["DB_MODE"])
    _line(stream, "verdict", f"refused: {type(error).__name__}: {error}")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _line(stream: TextIO, key: str, value: str) -> None:
    stream.write(f"{key}: {value}\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib.dbkit.doctor", description=DESCRIPTION)
    parser.add_argument("url", nargs="?", help="database URL (default: resolved from the environment like the app)")
    parser.add_argument("--mode", choices=MODES, help="default: DB_MODE, else serverless")
    parser.add_argument("--offline", action="store_true", help="check the configuration only; do not connect")
    parser.add_argument("--pooler-hosts", help="comma list of host or host:port (default: DB_POOLER_HOSTS)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
