"""TCP proxy for benchmarks and fault tests: counts round trips and injects network faults.

Usage::

    with Proxy("localhost", 6432) as proxy:
        ...  # point the client at proxy.host:proxy.port
        proxy.stats.client_flights

The proxy is byte-transparent (TLS passes through untouched) and runs one asyncio loop in one
background thread, whatever the number of connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")

_READ_SIZE = 64 * 1024
# Bounded so a stalled or slow reader pushes back on the sender through TCP, as a real network would.
_QUEUED_CHUNKS = 64
_CONNECT_TIMEOUT_S = 10.0
_CONTROL_TIMEOUT_S = 10.0
# Fault windows can be ended early (stall(0)), so waiting writers re-check this often.
_POLL_S = 0.02
# SO_LINGER on with a zero timeout makes close() send RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class ProxyStats:
    """Counters since start or reset_stats(); open_connections is a live gauge that reset does not touch.

    A flight is a burst of bytes from one side that starts after that side last received data (or is
    the first data on the connection), so client_flights counts request/response round trips.
    Bytes and flights are counted as the proxy receives them; blackholed data is not counted.
    What a client sends while closing (Terminate, TLS close_notify) arrives after its close() returns,
    so wait for open_connections to drop before reading or resetting counters after a close.
    """

    connections: int = 0  # accepted and served, blackholed ones included
    refused: int = 0  # reset at accept by refuse_for()
    open_connections: int = 0
    client_flights: int = 0
    server_flights: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class _Counters:
    connections: int = 0
    refused: int = 0
    client_flights: int = 0
    server_flights: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(eq=False)
class _Link:
    """One client connection and, once connected, its upstream connection."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    # The last thing the proxy saw on that side was data *from* it: more data continues the flight.
    client_sending: bool = False
    server_sending: bool = False
    # Set once data was blackholed: bytes are missing from the stream, so like a vanished peer the
    # link never delivers anything again.
    dead: bool = False
    task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """Abort both sockets with RST."""
        for writer in (self.client, self.server):
            if writer is not None:
                _reset(writer)

    def kill(self) -> None:
        """Reset both sockets and stop forwarding at once."""
        self.reset()
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        """Close both sockets (no-op for sockets already aborted)."""
        for writer in (self.client, self.server):
            if writer is not None:
                writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


async def _sleep_until(deadline: float) -> None:
    while (wait := deadline - time.monotonic()) > 0:
        await asyncio.sleep(wait)


class Proxy:
    """Forward one listening port to target_host:target_port, counting flights and injecting faults."""

    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self._target = (target_host, target_port)
        self._listen = (listen_host, listen_port)
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._delay_s = 0.0
        self._blackhole = False
        self._refuse_until = 0.0
        self._stall_until = 0.0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._upstream: list[tuple[socket.AddressFamily, str]] = []
        # Touched only on the loop thread.
        self._links: set[_Link] = set()

    # Lifecycle

    def start(self) -> Proxy:
        """Listen and forward on a background thread; return self."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        # Resolved once here so the loop never needs a resolver thread, and a bad host fails early.
        self._upstream = [
            (family, str(sockaddr[0]))
            for family, _, _, _, sockaddr in socket.getaddrinfo(*self._target, type=socket.SOCK_STREAM)
        ]
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=_run_loop, args=(loop,), name="tcp-proxy", daemon=True)
        self._thread.start()
        try:
            self._server = self._call(self._open_listener())
        except BaseException:
            self.stop()
            raise
        sockname = self._server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if not loop.is_closed():
                self._call(self._shutdown())
        finally:
            self._loop = self._thread = self._server = None
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(_CONTROL_TIMEOUT_S)

    def __enter__(self) -> Proxy:
        return self if self._thread is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """Address clients connect to."""
        return self._bound()[0]

    @property
    def port(self) -> int:
        """Port clients connect to."""
        return self._bound()[1]

    # Counting

    @property
    def stats(self) -> ProxyStats:
        """Snapshot of the counters."""
        with self._lock:
            c = self._counters
            return ProxyStats(
                connections=c.connections,
                refused=c.refused,
                open_connections=len(self._links),
                client_flights=c.client_flights,
                server_flights=c.server_flights,
                bytes_up=c.bytes_up,
                bytes_down=c.bytes_down,
            )

    def reset_stats(self) -> None:
        """Zero the counters; a flight in progress is not counted again."""
        with self._lock:
            self._counters = _Counters()

    # Network distance

    @property
    def delay_ms(self) -> float:
        """One-way latency added to every chunk in both directions (a round trip costs twice this)."""
        return self._delay_s * 1000

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        if value < 0:
            raise ValueError("delay_ms must be >= 0")
        self._delay_s = value / 1000

    # Faults

    def drop_connections(self) -> int:
        """Abort every open connection on both sides with RST; return how many client connections."""
        return self._call(self._drop_all())

    def refuse_for(self, seconds: float) -> None:
        """For the next `seconds`, reset new client connections right after accept; 0 ends it."""
        self._refuse_until = time.monotonic() + _non_negative(seconds)

    def stall(self, seconds: float) -> None:
        """For the next `seconds`, hold server-to-client data (delivered afterwards); 0 ends it."""
        self._stall_until = time.monotonic() + _non_negative(seconds)

    @property
    def blackhole(self) -> bool:
        """While True, data in both directions vanishes and new connections get no upstream.

        A connection that lost data stays silent for good, like one through a vanished peer.
        """
        return self._blackhole

    @blackhole.setter
    def blackhole(self, value: bool) -> None:
        self._blackhole = value

    # Loop side

    def _bound(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("proxy not started")
        return self._address

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("proxy not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CONTROL_TIMEOUT_S)

    async def _open_listener(self) -> asyncio.Server:
        host, port = self._listen
        # A large backlog because benchmarks open hundreds of connections at once.
        return await asyncio.start_server(self._accept, host, port, backlog=1024)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        links = list(self._links)
        for link in links:
            link.kill()
        await asyncio.gather(*(link.task for link in links if link.task), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Aborted transports close their sockets in callbacks scheduled for the next loop iteration.
        await asyncio.sleep(0)

    async def _drop_all(self) -> int:
        for link in self._links:
            link.kill()
        return len(self._links)

    def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        # Our own task rather than a coroutine callback: asyncio logs an error when it cancels those.
        link = _Link(client_writer)
        link.task = asyncio.get_running_loop().create_task(self._serve(link, client_reader))
        # A done callback, not a finally: a task cancelled before its first step never runs its body.
        link.task.add_done_callback(lambda _: self._forget(link))
        self._links.add(link)

    def _forget(self, link: _Link) -> None:
        self._links.discard(link)
        link.close()

    async def _serve(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        if time.monotonic() < self._refuse_until:
            with self._lock:
                self._counters.refused += 1
            link.reset()
            return
        with self._lock:
            self._counters.connections += 1
        if self._blackhole:
            link.dead = True
            while await client_reader.read(_READ_SIZE):
                pass
            return
        try:
            server_reader, link.server = await self._connect()
        except OSError:
            link.reset()
            return
        try:
            async with asyncio.TaskGroup() as group:
                up: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUED_CHUNKS)
                down: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUED_CHUNKS)
                group.create_task(self._receive(link, client_reader, up, upstream=True))
                group.create_task(self._deliver(link, link.server, up, upstream=True))
                group.create_task(self._receive(link, server_reader, down, upstream=False))
                group.create_task(self._deliver(link, link.client, down, upstream=False))
        except* OSError:
            # One side failed abruptly: pass that on to the other side rather than a clean close.
            link.reset()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        port = self._target[1]
        error: OSError = OSError(f"no address for {self._target[0]}")
        for family, address in self._upstream:
            try:
                connecting = asyncio.open_connection(address, port, family=family)
                return await asyncio.wait_for(connecting, _CONNECT_TIMEOUT_S)
            except OSError as exc:
                error = exc
        raise error

    async def _receive(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        *,
        upstream: bool,
    ) -> None:
        while chunk := await reader.read(_READ_SIZE):
            if self._blackhole or link.dead:
                link.dead = True
                continue
            self._count(link, len(chunk), upstream=upstream)
            await queue.put((time.monotonic() + self._delay_s, chunk))
        await queue.put(None)

    def _count(self, link: _Link, size: int, *, upstream: bool) -> None:
        with self._lock:
            c = self._counters
            if upstream:
                c.bytes_up += size
                if not link.client_sending:
                    c.client_flights += 1
                link.client_sending = True
            else:
                c.bytes_down += size
                if not link.server_sending:
                    c.server_flights += 1
                link.server_sending = True

    async def _deliver(
        self,
        link: _Link,
        writer: asyncio.StreamWriter,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        *,
        upstream: bool,
    ) -> None:
        while (item := await queue.get()) is not None:
            due, chunk = item
            await _sleep_until(due)
            if not upstream:
                while time.monotonic() < self._stall_until:
                    await asyncio.sleep(_POLL_S)
            if self._blackhole or link.dead:
                link.dead = True
                continue
            writer.write(chunk)
            # Flights end when the other side receives data, so this is where the turn passes.
            if upstream:
                link.server_sending = False
            else:
                link.client_sending = False
            await writer.drain()
        if link.dead:
            # A vanished peer sends the client nothing, not even EOF; upstream is closed so its slot
            # (a PgBouncer client connection) does not leak.
            if upstream:
                writer.close()
        elif writer.can_write_eof():
            writer.write_eof()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


def _non_negative(seconds: float) -> float:
    if seconds < 0:
        raise ValueError("seconds must be >= 0")
    return seconds


def main() -> None:
    """Run a proxy in the foreground until interrupted, then print its counters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", help="host:port to forward to")
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    with Proxy(host, int(port), listen_port=args.listen_port) as proxy:
        proxy.delay_ms = args.delay_ms
        print(f"{proxy.host}:{proxy.port} -> {args.target} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        print(proxy.stats)


if __name__ == "__main__":
    main()
