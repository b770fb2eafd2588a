"""Connection doctor: ``python -m lib.dbkit.doctor [URL] [--read-url URL] [--mode M] [--offline] [--pooler-hosts ...]``.

Prints the normalised, redacted settings and a verdict. Exit status: 0 accepted, 2 refused by configuration
(the message names the fix), 1 unreachable. Without a URL it resolves the database URL the way the app does
(DATABASE_URL, DATABASE_SECRET_ARN, DATABASE_URL_PARAMETER), and the read replica's likewise (DATABASE_READ_URL & co.,
or ``--read-url``): checked by the same rules, probed the same way, its lines prefixed ``replica``. Each probe says
whether the server is in recovery (a hot standby, as a read replica is) or not (a primary).
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
from lib.dbkit.settings import MODES, READ_URL_VARIABLES, Settings

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
    # pg_is_in_recovery(): a hot standby (a read replica) answers true, a primary false.
    in_recovery: bool = False

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
        # The environment's replica belongs to the environment's primary, not to the URL given here.
        if args.read_url is None and any(env.get(name) for name in READ_URL_VARIABLES):
            _line(stream, "read replica", "not checked: a URL was given without --read-url")
    if args.url or args.read_url:
        for name in READ_URL_VARIABLES:
            env.pop(name, None)
    if args.read_url:
        env["DATABASE_READ_URL"] = args.read_url
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
    replica = settings.replica.settings if settings.replica is not None else None
    for warning in settings.warnings:
        _line(stream, "warning", warning)
    for warning in replica.warnings if replica is not None else ():
        _line(stream, "replica warning", warning)
    if args.offline:
        _line(stream, "verdict", "accepted (offline: not connected)")
        return EXIT_ACCEPTED
    status, verdict = _check(stream, settings)
    if replica is not None:
        replica_status, replica_verdict = _check(stream, replica, replica=True)
        if replica_status != EXIT_ACCEPTED:
            problem = f"the read replica ({replica.source}) is {replica_verdict}"
            if status == EXIT_ACCEPTED:
                status, verdict = replica_status, f"{problem}; the primary is accepted (read-only units run there)"
            else:
                verdict = f"{verdict}; {problem}"
    _line(stream, "verdict", verdict)
    return status


def _check(stream: TextIO, settings: Settings, *, replica: bool = False) -> tuple[int, str]:
    """Probe one database (the primary, or the read replica) and report it; its exit status and verdict."""
    prefix = "replica " if replica else ""
    _report_negotiation(stream, settings.database, probe_negotiation(settings.database), prefix=prefix)
    try:
        probe = run_probe(settings)
    except (OSError, ConfigError, pg8000.dbapi.Error) as error:
        final = error if isinstance(error, ConfigError) else final_connect_error(error)
        if isinstance(final, DatabaseProviderRefusedError):
            return EXIT_UNREACHABLE, f"unavailable: {final}; to fix it: {final.action}"
        if final is not None:
            return EXIT_REFUSED, f"refused: {final}"
        return EXIT_UNREACHABLE, f"unreachable: {type(error).__name__}: {describe(error)}"
    _report(stream, settings, probe, replica=replica)
    return EXIT_ACCEPTED, "accepted"


def run_probe(settings: Settings) -> Probe:
    """Connect twice with pg8000 (no pool) and measure what the server and the path in between do."""
    kwargs = settings.database.connect_args()
    first = transport.connect(pg8000.dbapi.Connection, **kwargs)
    try:
        first_pid, server_version, in_recovery = _backend(
            first, "select pg_backend_pid(), current_setting('server_version'), pg_is_in_recovery()"
        )
        # The first client stays connected: only a pooler can hand its (now idle) server to the second client.
        second = transport.connect(pg8000.dbapi.Connection, **kwargs)
        try:
            second_pid, _, _ = _backend(second, "select pg_backend_pid(), '', false")
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
            in_recovery=in_recovery,
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


def _report_negotiation(stream: TextIO, database: DatabaseUrl, negotiation: Negotiation, *, prefix: str = "") -> None:
    def answer(accepted: bool | None) -> str:
        return {True: "yes", False: "no", None: "could not tell"}[accepted]

    _line(
        stream,
        f"{prefix}server accepts",
        f"SSLRequest {answer(negotiation.sslrequest)}, direct TLS (ALPN postgresql) {answer(negotiation.direct)}",
    )
    if database.sslnegotiation == "postgres" and negotiation.direct:
        _line(stream, f"{prefix}hint", "add sslnegotiation=direct to the URL: one round trip less per new connection")


def _backend(connection: Any, sql: str) -> tuple[int, str, bool]:
    cursor = connection.cursor()
    cursor.execute(sql)
    pid, version, in_recovery = cursor.fetchone()
    connection.commit()
    return int(pid), str(version), bool(in_recovery)


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


def _report(stream: TextIO, settings: Settings, probe: Probe, *, replica: bool = False) -> None:
    database = settings.database
    prefix = "replica " if replica else ""

    def line(key: str, value: str) -> None:
        _line(stream, f"{prefix}{key}", value)

    line("tls version", probe.tls_version or "none (plaintext)")
    if probe.sni_sent:
        line("sni sent", f"yes ({database.host})")
    else:
        reason = "no TLS" if probe.tls_version is None else "IP literal host"
        line("sni sent", f"no ({reason})")
    mechanism = probe.auth_mechanism or "not SCRAM"
    binding = "used" if mechanism.endswith("-PLUS") else "not used"
    line("authentication", f"{mechanism} (channel binding {binding})")
    line("server version", probe.server_version)
    pids = f"backend pids {probe.backend_pids[0]}, {probe.backend_pids[1]}"
    pooled = "yes" if probe.transaction_pooled else "no"
    line("transaction pooler", f"{pooled} ({pids})")
    line("round trip", f"{probe.rtt_ms:.2f} ms (median of {RTT_SAMPLES} 'select 1')")
    standby = "yes (a hot standby: read-only)" if probe.in_recovery else "no (a primary: takes writes)"
    line("in recovery", standby)
    if database.channel_binding == "require" and binding == "not used":
        line("warning", "channel_binding=require, but the server did not offer SCRAM-SHA-256-PLUS")
    if settings.mode == "serverless" and not probe.transaction_pooled:
        line("warning", "serverless mode expects a transaction pooler, but two clients got two backends")
    if settings.mode == "migration" and probe.transaction_pooled:
        line("warning", "migration mode expects a direct connection, but two clients shared one backend")
    if replica and not probe.in_recovery:
        line(
            "warning",
            f"{settings.source.kind} reaches a server that is not in recovery (a primary, or a promoted replica): "
            "reads work, but they load that server; give the replica endpoint's pooled string",
        )
    if not replica and probe.in_recovery:
        line(
            "warning",
            f"{settings.source.kind} reaches a hot standby (a read replica): every write will fail with 25006; give "
            "the primary endpoint's pooled string, and the replica's as DATABASE_READ_URL",
        )


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
    parser.add_argument(
        "--read-url",
        help="read replica URL (default: DATABASE_READ_URL & co. from the environment, unless a URL is given)",
    )
    parser.add_argument("--mode", choices=MODES, help="default: DB_MODE, else serverless")
    parser.add_argument("--offline", action="store_true", help="check the configuration only; do not connect")
    parser.add_argument("--pooler-hosts", help="comma list of host or host:port (default: DB_POOLER_HOSTS)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
