"""A local stand-in for Neon's proxy in front of the stack's PgBouncer: what a client of Neon sees, without Neon.

Usage::

    python -m devtools.neon_standin serve --listen-port P --control-port C --upstream-port U \\
        --cert standin.crt --key standin.key --ca ca.crt --endpoint ep-local-stack-123456 --domain stack.localhost \\
        [--replica-endpoint ep-local-stack-read-123456]
    python -m devtools.neon_standin ctl [--endpoint replica] status | reset | suspend | wake | suspend-after SECONDS
    python -m devtools.neon_standin ctl [--endpoint replica] wake-delay SECONDS | refuse KIND [--times N | --sticky]
    python -m devtools.neon_standin ctl pause-replay | resume-replay     # the read replica's WAL replay (the stack's)

Like Neon's proxy (neondatabase/neon ``proxy/src``, read, not vendored) it:

- accepts TLS after an SSLRequest and direct TLS (TLS first, ALPN ``postgresql``), refuses plaintext
  (``pglb/handshake.rs``);
- finds the endpoint in the SNI host name (first label, when the rest is its domain) or in
  ``options=endpoint=<id>``, with the proxy's rules and messages (``auth/credentials.rs``);
- answers every refusal before the session starts with an ErrorResponse of severity ERROR and SQLSTATE XX000
  (``stream.rs`` ``throw_error``), and re-wraps PgBouncer's startup errors the same way, message only; a refused
  password comes back as ``password authentication failed for user '<user>'`` (``auth/mod.rs``);
- forwards only ``user``, ``database``, ``application_name``, ``replication``, ``options`` without ``endpoint=``, plus
  ``client_encoding=UTF8`` (``compute/mod.rs`` ``set_startup_params``), then relays the session byte for byte.

It terminates the client's TLS and opens its own verified TLS to PgBouncer; SCRAM passes through (PgBouncer 1.18
offers no SCRAM-SHA-256-PLUS, so there is no channel binding to break). Each endpoint is a compute of its own: a
read replica's endpoint (``--replica-endpoint``) reaches the pooler's database for the stack's hot standby, and
scales to zero, wakes and refuses on its own. Scenario controls (scale to zero after idle, a wake delay, scripted
refusals), per endpoint, are switched at run time over a loopback control port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("neon_standin")

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
PROTOCOL_3_0 = 196608
TLS_RECORD_HANDSHAKE = 0x16
ALPN = "postgresql"
POOLER_SUFFIX = "-pooler"
PRIMARY = "primary"
REPLICA = "replica"
HANDSHAKE_TIMEOUT_S = 10.0
UPSTREAM_TIMEOUT_S = 10.0
MAX_STARTUP_PACKET = 10_000
_MONITOR_TICK_S = 0.05
_READ_SIZE = 64 * 1024

# Neon's texts, exactly (proxy/src paths in neondatabase/neon).
INSECURE = "connection is insecure (try using `sslmode=require`)"  # pglb/mod.rs ERR_INSECURE_CONNECTION
MISSING_ENDPOINT = (  # auth/mod.rs AuthError::MissingEndpointName
    "Endpoint ID is not specified. Either please upgrade the postgres client library (libpq) for SNI support or pass "
    "the endpoint ID (first part of the domain name) as a parameter: '?options=endpoint%3D<endpoint-id>'. "
    "See more at https://neon.tech/sni"
)
ENDPOINT_NOT_FOUND = "Control plane request failed: endpoint cannot be found"  # control_plane/messages.rs (404)
COULD_NOT_CONNECT = "Couldn't connect to compute node"  # compute/mod.rs COULD_NOT_CONNECT
SUSPENDED = "terminating connection due to administrator command"  # Postgres, 57P01, when the compute stops
# Not Neon's: the stand-in has no compute of its own behind the direct (unpooled) endpoint name.
DIRECT_NOT_SERVED = (
    "the local Neon stand-in serves only the pooled endpoint ({endpoint}-pooler); "
    "connect to Postgres directly with DIRECT_DATABASE_URL"
)


def password_failed(user: str) -> str:
    """auth/mod.rs AuthError::PasswordFailed."""
    return f"password authentication failed for user '{user}'"


def inconsistent_names(domain: str, option: str) -> str:
    """auth/credentials.rs InconsistentProjectNames."""
    return f"Inconsistent project name inferred from SNI ('{domain}') and project option ('{option}')."


def malformed_name(name: str) -> str:
    """auth/credentials.rs MalformedProjectName."""
    return f"Project name ('{name}') must contain only alphanumeric characters and hyphen."


# Scripted refusals: what Neon sends for each. Control-plane texts are the user-facing ones seen in public reports
# (the proxy's own fallbacks, e.g. "Control plane request failed: endpoint is disabled", mean the same).
REFUSALS: dict[str, Callable[[str], str]] = {
    "wrong_password": password_failed,
    "endpoint_disabled": lambda _user: "The endpoint has been disabled. Enable it using Neon API and retry.",
    "quota_exceeded": lambda _user: (
        "Your account or project has exceeded the compute time quota. Upgrade your plan to increase limits."
    ),
    "too_many_connections": lambda _user: "Too many connections to this endpoint. Please try again later.",
    "compute_unreachable": lambda _user: COULD_NOT_CONNECT,
}


class StandinError(RuntimeError):
    """The stand-in cannot do what was asked (bad control request, unreachable control port)."""


class _Refused(Exception):
    """Answer the client with Neon's ErrorResponse and close."""

    def __init__(self, label: str, message: str) -> None:
        super().__init__(message)
        self.label = label
        self.message = message


# --------------------------------------------------------------------------- wire format


def _cstring(text: str) -> bytes:
    return text.encode() + b"\0"


def frame(kind: bytes, body: bytes) -> bytes:
    """A backend/frontend message: type byte, Int32 length (itself included), body."""
    return kind + struct.pack("!I", len(body) + 4) + body


def neon_error(message: str) -> bytes:
    """Neon's ErrorResponse for any refusal before the session: severity ERROR, SQLSTATE XX000, message only."""
    return frame(b"E", b"SERROR\0" + b"CXX000\0" + b"M" + _cstring(message) + b"\0")


def admin_shutdown_error() -> bytes:
    """What Postgres sends to open sessions when the compute stops: FATAL 57P01."""
    return frame(b"E", b"SFATAL\0VFATAL\0C57P01\0M" + _cstring(SUSPENDED) + b"\0")


def startup_message(params: list[tuple[str, str]]) -> bytes:
    """A protocol 3.0 StartupMessage."""
    body = struct.pack("!I", PROTOCOL_3_0) + b"".join(_cstring(k) + _cstring(v) for k, v in params) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def parse_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by their one-letter code."""
    return {part[:1].decode(): part[1:].decode(errors="replace") for part in body.split(b"\0") if part}


def _parse_params(body: bytes) -> dict[str, str]:
    items = body.split(b"\0")
    params: dict[str, str] = {}
    for key, value in zip(items[0::2], items[1::2], strict=False):
        if key:
            params[key.decode(errors="replace")] = value.decode(errors="replace")
    return params


def split_options(options: str) -> list[str]:
    """Split ``options`` on unescaped whitespace like Postgres' pg_split_opts (escapes are kept as they are)."""
    tokens: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if char.isspace() and not escaped:
            if current:
                tokens.append("".join(current))
            current = []
        else:
            current.append(char)
        escaped = char == "\\" and not escaped
    if current:
        tokens.append("".join(current))
    return tokens


def _endpoint_param(token: str) -> str | None:
    for prefix in ("project=", "endpoint="):
        if token.startswith(prefix):
            return token[len(prefix) :]
    return None


def _is_neon_option(token: str) -> bool:
    key, colon, value = token.partition(":")
    return bool(colon and value and key.startswith("neon_") and key[5:].replace("_", "a").isalnum())


def forwarded_options(options: str) -> str | None:
    """``options`` as Neon passes them on: without ``endpoint=``/``project=`` and its own ``neon_*:`` flags."""
    kept = [t for t in split_options(options) if _endpoint_param(t) is None and not _is_neon_option(t)]
    return " ".join(kept) or None


def endpoint_from_sni(sni: str | None, domain: str) -> str | None:
    """The first label of an SNI name whose rest is the proxy's domain (auth/credentials.rs endpoint_sni)."""
    if not sni:
        return None
    label, dot, rest = sni.partition(".")
    if not dot or rest != domain or label in ("api", "apiauth"):
        return None
    return label


def resolve_endpoint(options: str | None, sni: str | None, domain: str) -> str:
    """The endpoint id Neon's proxy would use, or _Refused with its message (auth/credentials.rs parse)."""
    # Several endpoint=/project= options count as none at all (the proxy's at_most_one).
    given = [value for token in split_options(options or "") if (value := _endpoint_param(token)) is not None]
    option = given[0] if len(given) == 1 else None
    from_domain = endpoint_from_sni(sni, domain)
    if option is not None and from_domain is not None and option != from_domain:
        raise _Refused("inconsistent_endpoint", inconsistent_names(from_domain, option))
    name = option if option is not None else from_domain
    if name is None:
        raise _Refused("missing_endpoint", MISSING_ENDPOINT)
    if not all(char.isalnum() or char == "-" for char in name):
        raise _Refused("malformed_endpoint", malformed_name(name))
    return name


def forwarded_params(params: dict[str, str]) -> list[tuple[str, str]]:
    """What reaches the compute: client_encoding=UTF8, then the few parameters Neon passes on."""
    forwarded = [("client_encoding", "UTF8")]
    for key in ("user", "database", "application_name", "replication"):
        if key in params:
            forwarded.append((key, params[key]))
    options = forwarded_options(params.get("options", ""))
    if options:
        forwarded.append(("options", options))
    return forwarded


class FrameTracker:
    """Follows message boundaries in one direction of a relayed stream (to cut in only between messages)."""

    def __init__(self) -> None:
        self._header = b""
        self._remaining = 0

    @property
    def at_boundary(self) -> bool:
        """True when the bytes seen so far end exactly at the end of a message."""
        return self._remaining == 0 and not self._header

    def feed(self, data: bytes) -> None:
        """Account for the next chunk of the stream."""
        index, size = 0, len(data)
        while index < size:
            if self._remaining:
                taken = min(self._remaining, size - index)
                self._remaining -= taken
                index += taken
                continue
            part = data[index : index + 5 - len(self._header)]
            self._header += part
            index += len(part)
            if len(self._header) == 5:
                self._remaining = struct.unpack("!I", self._header[1:5])[0] - 4
                self._header = b""


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(5)
    length = struct.unpack("!I", header[1:5])[0]
    if length < 4:
        raise ConnectionError("malformed message length")
    return header[:1], await reader.readexactly(length - 4)


# --------------------------------------------------------------------------- scenario and counters


@dataclass
class Scenario:
    """What the stand-in simulates; switched at run time through the control port."""

    suspend_after: float | None = None  # seconds without traffic before the compute suspends (None: never)
    wake_delay: float = 0.0  # seconds the first connect after a suspend waits for the compute
    refusals: dict[str, int | None] = field(default_factory=dict)  # kind -> refusals left (None: until reset)

    def take_refusal(self) -> str | None:
        """The refusal for this connection attempt, if one is scripted (first scripted first); counts it down."""
        for kind, left in list(self.refusals.items()):
            if left is None:
                return kind
            if left == 1:
                del self.refusals[kind]
            else:
                self.refusals[kind] = left - 1
            return kind
        return None


@dataclass
class Counters:
    """Totals since start (never reset: callers compare before and after)."""

    connections: int = 0  # TCP connections accepted
    tls_sslrequest: int = 0  # TLS after SSLRequest
    tls_direct: int = 0  # direct TLS
    startups: int = 0  # startup messages received over TLS: one per connection attempt that got that far
    sessions: int = 0  # sessions relayed to ReadyForQuery
    suspends: int = 0
    wakes: int = 0
    terminated: int = 0  # open sessions ended by a suspend (57P01)
    refused: dict[str, int] = field(default_factory=dict)  # by reason


@dataclass(frozen=True)
class Route:
    """One endpoint the stand-in serves, and which PgBouncer database its sessions reach."""

    endpoint: str  # endpoint id without -pooler, e.g. ep-local-stack-123456
    # What the compute is, as control requests may name it instead of its id: primary, replica.
    role: str = PRIMARY
    # Appended to the client's database name: the pooler's alias for this endpoint's compute (a read replica's).
    database_suffix: str = ""


@dataclass(frozen=True)
class Config:
    """Where to listen and what to relay to; the first route is the primary endpoint."""

    listen_port: int
    control_port: int
    upstream_port: int
    cert: Path
    key: Path
    ca: Path
    routes: tuple[Route, ...]
    domain: str
    listen_host: str = "127.0.0.1"
    upstream_host: str = "127.0.0.1"
    upstream_server_name: str = "localhost"


class _Session:
    """One relayed session after startup: the two pumps and what a suspend needs to cut it cleanly."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.downstream = FrameTracker()
        self.tasks: list[asyncio.Task[None]] = []

    def terminate(self) -> None:
        """The compute went away: Postgres' FATAL 57P01 (between messages only), then both sides closed."""
        for task in self.tasks:
            task.cancel()
        if self.downstream.at_boundary and not self.client.is_closing():
            self.client.write(admin_shutdown_error())
        self.client.close()
        self.upstream.close()


class _Compute:
    """One endpoint's compute as Neon runs it: its own scenario, scale to zero, wake-up and open sessions."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.scenario = Scenario()
        # This endpoint's share of the totals (the connection and TLS counters stay at 0: no endpoint is known yet).
        self.counters = Counters()
        self.suspended = False
        self.last_activity = time.monotonic()
        self.waking: asyncio.Task[None] | None = None
        self.sessions: set[_Session] = set()
        self.starting = 0  # connection attempts between startup and an open session: the compute stays up

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def suspend(self) -> int:
        """The compute stops: every open session gets FATAL 57P01 and is closed; returns how many."""
        if self.suspended:
            return 0
        self.suspended = True
        self.counters.suspends += 1
        sessions = list(self.sessions)
        for session in sessions:
            session.terminate()
        self.counters.terminated += len(sessions)
        LOG.info("compute %s suspended; %d open session(s) terminated", self.route.endpoint, len(sessions))
        return len(sessions)

    async def wake(self) -> bool:
        """Wait until the compute is up (after the wake delay); True when this call found it suspended."""
        if not self.suspended:
            return False
        if self.waking is None:
            self.waking = asyncio.get_running_loop().create_task(self._wake_up(self.scenario.wake_delay))
        # Shielded: a client that gives up does not stop the compute from starting.
        await asyncio.shield(self.waking)
        return True

    async def _wake_up(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            self.wake_now()

    def wake_now(self) -> bool:
        """The compute is up again; True when it was suspended."""
        was_suspended = self.suspended
        if was_suspended:
            self.counters.wakes += 1
        self.suspended = False
        self.waking = None
        self.touch()
        return was_suspended

    def idle_enough_to_suspend(self) -> bool:
        after = self.scenario.suspend_after
        idle = time.monotonic() - self.last_activity
        return after is not None and not self.suspended and self.starting == 0 and idle >= after

    def status(self) -> dict[str, Any]:
        return {
            "role": self.route.role,
            "suspended": self.suspended,
            "open_sessions": len(self.sessions),
            "scenario": asdict(self.scenario),
            "counters": asdict(self.counters),
        }


class Standin:
    """The proxy: accepts clients, relays each endpoint's sessions to its PgBouncer database, plays the scenarios."""

    def __init__(self, config: Config) -> None:
        if not config.routes:
            raise StandinError("the stand-in needs at least one endpoint")
        self.config = config
        self.computes = {route.endpoint: _Compute(route) for route in config.routes}
        self.primary = self.computes[config.routes[0].endpoint]
        # Totals over every endpoint, and what happened before an endpoint was known (TLS, refusals).
        self.counters = Counters()
        self._tasks: set[asyncio.Task[None]] = set()
        # Made when serving starts: the control logic needs no certificate files (unit tests drive it directly).
        self._server_tls: ssl.SSLContext | None = None
        self._upstream_tls: ssl.SSLContext | None = None

    @property
    def scenario(self) -> Scenario:
        """The primary endpoint's scenario."""
        return self.primary.scenario

    @property
    def suspended(self) -> bool:
        """Whether the primary endpoint's compute is suspended."""
        return self.primary.suspended

    def _make_server_tls(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.config.cert), str(self.config.key))
        context.set_alpn_protocols([ALPN])

        def remember_sni(ssl_object: Any, server_name: str | None, _context: ssl.SSLContext) -> None:
            ssl_object.standin_sni = server_name

        context.sni_callback = remember_sni
        return context

    # ------------------------------------------------------------------ serving

    async def serve_forever(self) -> None:
        """Listen for clients and for control requests until cancelled."""
        self._server_tls = self._make_server_tls()
        self._upstream_tls = ssl.create_default_context(cafile=str(self.config.ca))
        loop = asyncio.get_running_loop()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.config.listen_host, self.config.listen_port))
        listener.listen(1024)
        listener.setblocking(False)
        control = await asyncio.start_server(self._control, "127.0.0.1", self.config.control_port)
        monitor = loop.create_task(self._monitor())
        LOG.info("listening on %s:%s, control on 127.0.0.1:%s", *listener.getsockname(), self.config.control_port)
        try:
            while True:
                connection, _ = await loop.sock_accept(listener)
                connection.setblocking(False)
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                task = loop.create_task(self._client(connection))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            monitor.cancel()
            control.close()
            listener.close()
            for compute in self.computes.values():
                for session in list(compute.sessions):
                    session.terminate()

    async def _client(self, connection: socket.socket) -> None:
        self.counters.connections += 1
        writer: asyncio.StreamWriter | None = None
        compute: list[_Compute] = []  # filled in by _startup once the endpoint is known
        try:
            accepted = await asyncio.wait_for(self._negotiate(connection), HANDSHAKE_TIMEOUT_S)
            if accepted is None:
                return
            reader, writer = accepted
            await self._startup(reader, writer, compute)
        except _Refused as refusal:
            self._count_refusal(refusal.label, compute[0] if compute else None)
            if writer is not None and not writer.is_closing():
                writer.write(neon_error(refusal.message))
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.drain()
        except (OSError, ConnectionError, EOFError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        finally:
            if writer is not None:
                writer.close()
            else:
                connection.close()

    def _count_refusal(self, label: str, compute: _Compute | None = None) -> None:
        for counters in (self.counters, *([compute.counters] if compute else [])):
            counters.refused[label] = counters.refused.get(label, 0) + 1
        LOG.info("refused a connection: %s", label)

    async def _negotiate(self, connection: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """SSLRequest or direct TLS; plaintext startup is answered with Neon's refusal."""
        loop = asyncio.get_running_loop()
        if not await _readable(connection):
            return None
        first = connection.recv(1, socket.MSG_PEEK)
        if not first:
            return None
        if first[0] == TLS_RECORD_HANDSHAKE:
            self.counters.tls_direct += 1
            return await self._accept_tls(connection)
        tried_gss = False
        while True:
            length, code = struct.unpack("!II", await _recv_exactly(connection, 8))
            if length == 8 and code == SSL_REQUEST_CODE:
                await loop.sock_sendall(connection, b"S")
                self.counters.tls_sslrequest += 1
                return await self._accept_tls(connection)
            if length == 8 and code == GSSENC_REQUEST_CODE and not tried_gss:
                tried_gss = True
                await loop.sock_sendall(connection, b"N")
                continue
            if code == CANCEL_REQUEST_CODE or not 8 <= length <= MAX_STARTUP_PACKET:
                return None
            # A startup message in plaintext: the proxy requires TLS.
            await _recv_exactly(connection, length - 8)
            self._count_refusal("insecure")
            await loop.sock_sendall(connection, neon_error(INSECURE))
            return None

    async def _accept_tls(self, connection: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_SIZE)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, sock=connection, ssl=self._server_tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        if alpn not in (None, ALPN):
            writer.close()
            raise ConnectionError(f"unexpected ALPN {alpn!r}")  # pglb/handshake.rs: a protocol violation
        return reader, writer

    async def _startup(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, resolved: list[_Compute]
    ) -> None:
        length = struct.unpack("!I", await asyncio.wait_for(reader.readexactly(4), HANDSHAKE_TIMEOUT_S))[0]
        if not 8 <= length <= MAX_STARTUP_PACKET:
            return
        body = await asyncio.wait_for(reader.readexactly(length - 4), HANDSHAKE_TIMEOUT_S)
        if struct.unpack("!I", body[:4])[0] != PROTOCOL_3_0:
            return  # a second SSLRequest inside TLS, a cancel, or another protocol: the proxy hangs up
        self.counters.startups += 1
        params = _parse_params(body[4:])
        user = params.get("user")
        if user is None:
            raise _Refused("missing_user", "Parameter 'user' is missing in startup packet.")
        sni = getattr(writer.get_extra_info("ssl_object"), "standin_sni", None)
        endpoint = resolve_endpoint(params.get("options"), sni, self.config.domain)
        compute = self.computes.get(endpoint.removesuffix(POOLER_SUFFIX))
        if compute is None:
            raise _Refused("endpoint_not_found", ENDPOINT_NOT_FOUND)
        resolved.append(compute)
        compute.counters.startups += 1
        if not endpoint.endswith(POOLER_SUFFIX):
            raise _Refused("direct_endpoint", DIRECT_NOT_SERVED.format(endpoint=compute.route.endpoint))
        scripted = compute.scenario.take_refusal()
        if scripted is not None:
            raise _Refused(scripted, REFUSALS[scripted](user))
        compute.touch()
        compute.starting += 1
        try:
            if await compute.wake():
                self.counters.wakes += 1
            try:
                up_reader, up_writer = await self._open_upstream()
            except (OSError, ConnectionError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
                raise _Refused("compute_unreachable", COULD_NOT_CONNECT) from None
            try:
                up_writer.write(startup_message(forwarded_params(routed(params, compute.route))))
                if await self._relay_startup(reader, writer, up_reader, up_writer, user, compute):
                    await self._relay_session(reader, writer, up_reader, up_writer, compute)
            finally:
                up_writer.close()
        finally:
            compute.starting -= 1

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                loop.sock_connect(sock, (self.config.upstream_host, self.config.upstream_port)), UPSTREAM_TIMEOUT_S
            )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_sendall(sock, struct.pack("!II", 8, SSL_REQUEST_CODE))
            if await asyncio.wait_for(_recv_exactly(sock, 1), UPSTREAM_TIMEOUT_S) != b"S":
                raise ConnectionError("the pooler refused TLS")
            return await asyncio.wait_for(
                asyncio.open_connection(
                    sock=sock, ssl=self._upstream_tls, server_hostname=self.config.upstream_server_name
                ),
                UPSTREAM_TIMEOUT_S,
            )
        except BaseException:
            sock.close()
            raise

    async def _relay_startup(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        user: str,
        compute: _Compute,
    ) -> bool:
        """Relay authentication and startup up to ReadyForQuery; re-wrap an error the way Neon does."""
        authenticating = False
        while True:
            kind, body = await asyncio.wait_for(_read_message(up_reader), UPSTREAM_TIMEOUT_S)
            compute.touch()
            if kind == b"E":
                # Neon checks the password itself and says so in its own words; any other startup error of the
                # compute reaches the client as its message only.
                message = password_failed(user) if authenticating else parse_fields(body).get("M", "")
                raise _Refused("password_failed" if authenticating else "upstream_error", message)
            writer.write(frame(kind, body))
            if kind == b"R":
                code = struct.unpack("!I", body[:4])[0]
                authenticating = code != 0
                if code in (3, 5, 10, 11):  # cleartext, MD5, SASL, SASLContinue: the client answers
                    await writer.drain()
                    answer_kind, answer = await asyncio.wait_for(_read_message(reader), HANDSHAKE_TIMEOUT_S)
                    up_writer.write(frame(answer_kind, answer))
                    await up_writer.drain()
            elif kind == b"Z":
                await writer.drain()
                return True

    async def _relay_session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        compute: _Compute,
    ) -> None:
        session = _Session(writer, up_writer)
        self.counters.sessions += 1
        compute.counters.sessions += 1
        # No longer starting: from here on only traffic keeps the compute awake.
        compute.starting -= 1
        compute.sessions.add(session)
        loop = asyncio.get_running_loop()
        session.tasks = [
            loop.create_task(self._pump(reader, up_writer, None, compute)),
            loop.create_task(self._pump(up_reader, writer, session.downstream, compute)),
        ]
        try:
            await asyncio.wait(session.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in session.tasks:
                task.cancel()
            compute.sessions.discard(session)
            compute.starting += 1  # balanced by _startup's finally

    async def _pump(
        self,
        source: asyncio.StreamReader,
        target: asyncio.StreamWriter,
        tracker: FrameTracker | None,
        compute: _Compute,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
            while chunk := await source.read(_READ_SIZE):
                compute.touch()
                if tracker is not None:
                    tracker.feed(chunk)
                target.write(chunk)
                await target.drain()

    # ------------------------------------------------------------------ scale to zero

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(_MONITOR_TICK_S)
            for compute in self.computes.values():
                if compute.idle_enough_to_suspend():
                    self._suspend(compute)

    def _suspend(self, compute: _Compute) -> None:
        if compute.suspended:
            return
        terminated = compute.suspend()
        self.counters.suspends += 1
        self.counters.terminated += terminated

    def _wake_now(self, compute: _Compute) -> None:
        if compute.wake_now():
            self.counters.wakes += 1

    def suspend(self) -> None:
        """The primary endpoint's compute stops (see _Compute.suspend); the next connect wakes it."""
        self._suspend(self.primary)

    def wake_now(self) -> None:
        """The primary endpoint's compute is up again."""
        self._wake_now(self.primary)

    # ------------------------------------------------------------------ control

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer: dict[str, Any] = {"ok": True, **self.handle(json.loads(line))}
                except (StandinError, ValueError, TypeError, KeyError) as error:
                    answer = {"ok": False, "error": str(error)}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    def _compute(self, name: Any) -> _Compute:
        """The compute a control request names, by endpoint id or by role; the primary when it names none."""
        if name is None:
            return self.primary
        wanted = str(name).removesuffix(POOLER_SUFFIX)
        for compute in self.computes.values():
            if wanted in (compute.route.endpoint, compute.route.role):
                return compute
        names = [f"{compute.route.role} ({compute.route.endpoint})" for compute in self.computes.values()]
        raise StandinError(f"unknown endpoint {name!r}: expected one of {', '.join(names)}")

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Apply one control request (to ``endpoint``, the primary when absent); returns the status after it."""
        op = request.get("op")
        endpoint = request.get("endpoint")
        compute = self._compute(endpoint)
        if op == "reset":
            # Without an endpoint: every endpoint (a test's scenario never outlives it).
            for each in self.computes.values() if endpoint is None else [compute]:
                each.scenario = Scenario()
                self._wake_now(each)
        elif op == "set":
            if "suspend_after" in request:
                value = request["suspend_after"]
                compute.scenario.suspend_after = None if value is None else _seconds(value)
                compute.touch()
            if "wake_delay" in request:
                compute.scenario.wake_delay = _seconds(request["wake_delay"])
        elif op == "refuse":
            kind = request["kind"]
            if kind not in REFUSALS:
                raise StandinError(f"unknown refusal {kind!r}: expected one of {', '.join(REFUSALS)}")
            times = request.get("times", 1)
            if times is not None and (not isinstance(times, int) or times < 1):
                raise StandinError("times must be a whole number >= 1, or null for a sticky refusal")
            compute.scenario.refusals[kind] = times
        elif op == "suspend":
            self._suspend(compute)
        elif op == "wake":
            self._wake_now(compute)
        elif op != "status":
            raise StandinError(f"unknown op {op!r}: expected status, reset, set, refuse, suspend or wake")
        return self.status()

    def status(self) -> dict[str, Any]:
        """The primary endpoint's scenario and state, the totals, and each endpoint's own."""
        return {
            "suspended": self.primary.suspended,
            "open_sessions": len(self.primary.sessions),
            "scenario": asdict(self.primary.scenario),
            "counters": asdict(self.counters),
            "endpoints": {name: compute.status() for name, compute in self.computes.items()},
        }


def routed(params: dict[str, str], route: Route) -> dict[str, str]:
    """The startup parameters with the database renamed to the pooler's alias for the endpoint's compute."""
    if not route.database_suffix:
        return params
    # Postgres' default database is the user's name.
    return {**params, "database": params.get("database", params.get("user", "")) + route.database_suffix}


async def _readable(connection: socket.socket) -> bool:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(connection.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(connection.fileno())
    return True


async def _recv_exactly(connection: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(connection, size - len(data))
        if not chunk:
            raise asyncio.IncompleteReadError(data, size)
        data += chunk
    return data


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise StandinError(f"expected a number of seconds >= 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- control client


CONTROL_VARIABLE = "NEON_STANDIN_CONTROL"


class StandinControl:
    """Switch the running stand-in's scenario from tests, tools and ``make`` (one request per call).

    Requests go to one endpoint: ``endpoint`` (an endpoint id, or a role: primary, replica), the primary when None;
    ``on(...)`` gives the same control bound to another endpoint. ``reset()`` without an endpoint resets them all.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0, endpoint: str | None = None) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.endpoint = endpoint

    @classmethod
    def parse(cls, address: str) -> StandinControl:
        """From ``host:port`` (the value of NEON_STANDIN_CONTROL in .stack/env)."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise StandinError(f"{CONTROL_VARIABLE}={address!r} is not host:port")
        return cls(host, int(port))

    def on(self, endpoint: str | None) -> StandinControl:
        """The same stand-in, with requests going to ``endpoint`` (an id or a role; None: the primary)."""
        return StandinControl(*self.address, timeout=self.timeout, endpoint=endpoint)

    def request(self, **fields: Any) -> dict[str, Any]:
        """Send one request; the stand-in's status after it."""
        if self.endpoint is not None:
            fields = {**fields, "endpoint": self.endpoint}
        try:
            with socket.create_connection(self.address, self.timeout) as sock:
                sock.sendall(json.dumps(fields).encode() + b"\n")
                reply = sock.makefile("rb").readline()
        except OSError as error:
            raise StandinError(f"the stand-in's control port {self.address[0]}:{self.address[1]} did not answer: "
                               f"{error} (is the stack up? make stack-up)") from None  # fmt: skip
        answer: dict[str, Any] = json.loads(reply)
        if not answer.pop("ok", False):
            raise StandinError(str(answer.get("error")))
        return answer

    def status(self) -> dict[str, Any]:
        """State and counters."""
        return self.request(op="status")

    def endpoint_status(self) -> dict[str, Any]:
        """This control's endpoint: its role, state, scenario and its own counters."""
        endpoints: dict[str, dict[str, Any]] = self.status()["endpoints"]
        wanted = (self.endpoint or PRIMARY).removesuffix(POOLER_SUFFIX)
        for name, status in endpoints.items():
            if wanted in (name, status["role"]):
                return status
        raise StandinError(f"the stand-in serves no endpoint {wanted!r}")

    def reset(self) -> dict[str, Any]:
        """No refusals, no suspend timer, no wake delay, compute up (every endpoint's, unless bound to one)."""
        return self.request(op="reset")

    def configure(self, **settings: float | None) -> dict[str, Any]:
        """Set ``suspend_after`` (seconds idle, None: never) and/or ``wake_delay`` (seconds)."""
        return self.request(op="set", **settings)

    def refuse(self, kind: str, *, times: int | None = 1) -> dict[str, Any]:
        """Refuse the next ``times`` connection attempts with Neon's message for ``kind`` (None: until reset)."""
        return self.request(op="refuse", kind=kind, times=times)

    def suspend(self) -> dict[str, Any]:
        """Suspend the compute now."""
        return self.request(op="suspend")

    def wake(self) -> dict[str, Any]:
        """Wake the compute now, without the wake delay."""
        return self.request(op="wake")


def _control_from_env() -> StandinControl:
    from devtools.stack import read_env  # the stack imports nothing of this module; keep it that way

    address = os.environ.get(CONTROL_VARIABLE) or read_env().get(CONTROL_VARIABLE)
    if not address:
        raise StandinError(f"{CONTROL_VARIABLE} is not set and .stack/env does not name it: run `make stack-up`")
    return StandinControl.parse(address)


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.neon_standin", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the stand-in in the foreground")
    for name in ("listen-port", "control-port", "upstream-port"):
        serve.add_argument(f"--{name}", type=int, required=True)
    for name in ("cert", "key", "ca"):
        serve.add_argument(f"--{name}", type=Path, required=True)
    serve.add_argument("--endpoint", required=True, help="endpoint id without -pooler, e.g. ep-local-stack-123456")
    serve.add_argument("--replica-endpoint", help="a read replica's endpoint id on the same branch (optional)")
    serve.add_argument(
        "--replica-database-suffix",
        default="_replica",
        help="the replica's sessions go to the pooler's database <name><suffix> (default _replica)",
    )
    serve.add_argument("--domain", required=True, help="what follows the endpoint label in host names")
    ctl = commands.add_parser("ctl", help="switch the running stand-in's scenario")
    ctl.add_argument(
        "--endpoint",
        help="the endpoint to act on: primary (default), replica, or an endpoint id; reset without it resets all",
    )
    actions = ctl.add_subparsers(dest="action", required=True)
    for name in ("status", "reset", "suspend", "wake"):
        actions.add_parser(name)
    actions.add_parser("suspend-after", help="suspend after SECONDS without traffic ('off': never)").add_argument(
        "seconds"
    )
    actions.add_parser("wake-delay", help="the first connect after a suspend waits SECONDS").add_argument(
        "seconds", type=float
    )
    refuse = actions.add_parser("refuse", help="refuse connection attempts with Neon's message")
    refuse.add_argument("kind", choices=sorted(REFUSALS))
    how_long = refuse.add_mutually_exclusive_group()
    how_long.add_argument("--times", type=int, default=1, help="refuse this many attempts (default 1)")
    how_long.add_argument("--sticky", action="store_true", help="refuse every attempt until `ctl reset`")
    actions.add_parser("pause-replay", help="the read replica stops replaying WAL (pg_wal_replay_pause): it lags")
    actions.add_parser("resume-replay", help="the read replica replays WAL again (pg_wal_replay_resume)")
    return parser


def _ctl(args: argparse.Namespace) -> dict[str, Any]:
    if args.action in ("pause-replay", "resume-replay"):
        # Not the proxy's business: the stack's standby, over its admin socket.
        if args.endpoint not in (None, REPLICA):
            raise StandinError(f"{args.action} acts on the read replica only: drop --endpoint {args.endpoint}")
        from devtools.stack import StackError, set_replay_paused

        try:
            return set_replay_paused(args.action == "pause-replay")
        except StackError as error:
            raise StandinError(str(error)) from None
    control = _control_from_env().on(args.endpoint)
    if args.action == "suspend-after":
        return control.configure(suspend_after=None if args.seconds == "off" else float(args.seconds))
    if args.action == "wake-delay":
        return control.configure(wake_delay=args.seconds)
    if args.action == "refuse":
        return control.refuse(args.kind, times=None if args.sticky else args.times)
    result: dict[str, Any] = getattr(control, args.action)()
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ctl":
        try:
            print(json.dumps(_ctl(args), indent=2))
        except StandinError as error:
            print(f"neon_standin: {error}", file=sys.stderr)
            return 1
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s neon_standin %(message)s", stream=sys.stderr)
    routes = [Route(args.endpoint)]
    if args.replica_endpoint:
        routes.append(Route(args.replica_endpoint, role=REPLICA, database_suffix=args.replica_database_suffix))
    config = Config(
        listen_port=args.listen_port,
        control_port=args.control_port,
        upstream_port=args.upstream_port,
        cert=args.cert,
        key=args.key,
        ca=args.ca,
        routes=tuple(routes),
        domain=args.domain,
    )
    asyncio.run(_serve(Standin(config)))
    return 0


async def _serve(standin: Standin) -> None:
    task = asyncio.get_running_loop().create_task(standin.serve_forever())
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    sys.exit(main())
