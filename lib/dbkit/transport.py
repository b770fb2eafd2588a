"""How a pg8000 connection reaches the server, for either driver: TCP with TCP_NODELAY, then TLS.

Two libpq settings pg8000 lacks are honoured here, with pg8000's public ``sock`` argument: ``hostaddr`` (connect
to that address while TLS still uses ``host`` for SNI and the certificate check) and ``sslnegotiation="direct"``
(TLS from the first byte with ALPN ``postgresql``, as PostgreSQL 17 and Neon's proxy accept: no SSLRequest round
trip). With the default negotiation pg8000 sends the SSLRequest and does TLS itself, with SNI for the host name.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from pg8000.exceptions import InterfaceError

from lib.dbkit.dsn import POSTGRES_ALPN
from lib.dbkit.errors import TlsNegotiationError

C = TypeVar("C")


def connect(factory: Callable[..., C], **kwargs: Any) -> C:
    """``factory(**kwargs)`` (a pg8000 connection class) over a socket opened here; closed again if that fails."""
    hostaddr = kwargs.pop("hostaddr", None)
    negotiation = kwargs.pop("sslnegotiation", "postgres")
    host = kwargs.get("host", "localhost")
    if host is None or kwargs.get("sock") is not None or kwargs.get("unix_sock") is not None:
        return factory(**kwargs)
    sock: socket.socket = open_socket(
        host,
        kwargs.get("port", 5432),
        timeout=kwargs.get("timeout"),
        source_address=kwargs.pop("source_address", None),
        keepalive=kwargs.pop("tcp_keepalive", True),
        hostaddr=hostaddr,
    )
    try:
        if negotiation == "direct":
            sock = direct_tls(sock, kwargs.get("ssl_context"), host)
            # TLS is up: pg8000 must not send an SSLRequest inside it (False = no TLS of its own).
            kwargs["ssl_context"] = False
        return factory(sock=sock, **kwargs)
    except BaseException:
        sock.close()
        raise


def direct_tls(sock: socket.socket, context: Any, host: str) -> ssl.SSLSocket:
    """TLS from the first byte (PostgreSQL 17's sslnegotiation=direct): SNI, verification and ALPN ``postgresql``."""
    if not isinstance(context, ssl.SSLContext):
        raise TlsNegotiationError("sslnegotiation=direct needs TLS: use sslmode=verify-full (or require)")
    try:
        tls = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLError as error:
        # A certificate that does not verify, or a peer gone mid-handshake, keep their own meaning; any other
        # handshake failure is a server answering a ClientHello with something that is not TLS.
        if isinstance(error, ssl.SSLCertVerificationError | ssl.SSLEOFError | ssl.SSLZeroReturnError):
            raise
        raise _no_direct_tls(f"the TLS handshake failed: {error.reason or error}") from error
    # A server that completed the handshake without ALPN may not know this is PostgreSQL (libpq refuses it too).
    if tls.selected_alpn_protocol() != POSTGRES_ALPN:
        tls.close()
        raise _no_direct_tls(f"the server did not select ALPN {POSTGRES_ALPN!r}")
    return tls


def _no_direct_tls(what: str) -> TlsNegotiationError:
    return TlsNegotiationError(
        f"sslnegotiation=direct: {what}, so the server does not accept direct TLS (PostgreSQL before 17, PgBouncer): "
        "remove sslnegotiation=direct from the URL (`python -m lib.dbkit.doctor` shows what the server supports)"
    )


def open_socket(
    host: str,
    port: int,
    *,
    timeout: float | None,
    hostaddr: str | None = None,
    source_address: Any = None,
    keepalive: bool = True,
) -> socket.socket:
    """pg8000's TCP socket plus TCP_NODELAY, which libpq sets and pg8000 does not; to ``hostaddr`` when given."""
    # Without TCP_NODELAY, Nagle holds the startup message until the server ACKs the TLS Finished sent just
    # before it: one more round trip per new connection.
    try:
        sock = socket.create_connection((hostaddr or host, port), timeout, source_address)
    except OSError as error:
        where = f"host {host}" if hostaddr is None else f"host {host} at hostaddr {hostaddr}"
        raise InterfaceError(
            f"Can't create a connection to {where} and port {port} "
            f"(timeout is {timeout} and source_address is {source_address})."
        ) from error
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock
