"""devtools.proxy against a loopback line-echo server: flight counting, latency and faults."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from devtools.proxy import Proxy

pytestmark = pytest.mark.integration

TIMEOUT_S = 5.0
# Long enough that the client's short recv timeout certainly expires inside a fault window.
FAULT_S = 1.0
SHORT_TIMEOUT_S = 0.3


class _LineEcho(socketserver.BaseRequestHandler):
    """Replies to each complete line with that line, all complete lines of a read in one send."""

    server: _EchoServer

    def handle(self) -> None:
        self.server.count_accept()
        self.request.settimeout(TIMEOUT_S * 2)
        pending = b""
        while True:
            try:
                data = self.request.recv(65536)
                if not data:
                    return
                pending += data
                complete, newline, pending = pending.rpartition(b"\n")
                if newline:
                    self.request.sendall(complete + newline)
            except OSError:
                return


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 512

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _LineEcho)
        self._lock = threading.Lock()
        self.accepted = 0

    def count_accept(self) -> None:
        with self._lock:
            self.accepted += 1


@pytest.fixture
def echo() -> Iterator[_EchoServer]:
    server = _EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


@pytest.fixture
def proxy(echo: _EchoServer) -> Iterator[Proxy]:
    host, port = echo.server_address[:2]
    with Proxy(str(host), int(port)) as started:
        yield started


def _connect(proxy: Proxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT_S)
    # Each send() leaves as its own segment, which is what the flight counting must cope with.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _exchange(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    return _recv_exactly(sock, len(line))


def _eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _proxy_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "tcp-proxy"]


def test_one_request_and_its_reply_are_one_flight_each_way(proxy: Proxy) -> None:
    with _connect(proxy) as sock:
        assert _exchange(sock, b"hello\n") == b"hello\n"

    stats = proxy.stats
    assert (stats.connections, stats.client_flights, stats.server_flights) == (1, 1, 1)
    assert (stats.bytes_up, stats.bytes_down) == (6, 6)


def test_several_sends_before_a_reply_are_one_flight(proxy: Proxy) -> None:
    with _connect(proxy) as sock:
        for part in (b"a", b"b", b"c\n"):
            sock.sendall(part)
            time.sleep(0.02)  # separate segments, read by the proxy one at a time
        assert _recv_exactly(sock, 4) == b"abc\n"

    assert proxy.stats.client_flights == 1
    assert proxy.stats.server_flights == 1


def test_ping_pongs_count_one_flight_each_summed_over_connections(proxy: Proxy) -> None:
    with _connect(proxy) as first, _connect(proxy) as second:
        _exchange(first, b"1\n")
        _exchange(second, b"2\n")
        _exchange(first, b"3\n")

    stats = proxy.stats
    assert (stats.connections, stats.client_flights, stats.server_flights) == (2, 3, 3)
    assert (stats.bytes_up, stats.bytes_down) == (6, 6)


def test_reset_stats_zeroes_the_counters(proxy: Proxy) -> None:
    with _connect(proxy) as sock:
        _exchange(sock, b"before\n")
        proxy.reset_stats()
        _exchange(sock, b"after\n")

        stats = proxy.stats
        assert (stats.connections, stats.client_flights, stats.server_flights) == (0, 1, 1)
        assert (stats.bytes_up, stats.open_connections) == (6, 1)


def test_bytes_pass_through_unchanged(proxy: Proxy) -> None:
    # The 8-byte Postgres SSLRequest, every byte value, and a payload larger than one read.
    payload = bytes.fromhex("0000000804d2162f") + bytes(range(256)) * 1024 + b"\n"
    with _connect(proxy) as sock:
        assert _exchange(sock, payload) == payload

    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)


def test_delay_applies_in_each_direction(proxy: Proxy) -> None:
    proxy.delay_ms = 100
    with _connect(proxy) as sock:
        started = time.monotonic()
        _exchange(sock, b"slow\n")
        elapsed = time.monotonic() - started

    assert proxy.delay_ms == 100
    assert elapsed >= 0.2


def test_drop_connections_resets_open_connections(proxy: Proxy, echo: _EchoServer) -> None:
    with _connect(proxy) as sock:
        _exchange(sock, b"up\n")

        assert proxy.drop_connections() == 1
        with pytest.raises((EOFError, ConnectionError)):
            _exchange(sock, b"gone?\n")

    assert _eventually(lambda: proxy.stats.open_connections == 0)
    with _connect(proxy) as sock:
        assert _exchange(sock, b"new\n") == b"new\n"


def test_refuse_for_closes_new_connections_until_the_window_ends(proxy: Proxy) -> None:
    with _connect(proxy) as existing:
        _exchange(existing, b"accepted\n")  # the proxy decides at accept, which trails connect()
        proxy.refuse_for(FAULT_S)
        with pytest.raises((EOFError, ConnectionError)), _connect(proxy) as refused:
            _exchange(refused, b"hello\n")
        assert _exchange(existing, b"still here\n") == b"still here\n"

    def new_connection_works() -> bool:
        try:
            with _connect(proxy) as sock:
                return _exchange(sock, b"hello\n") == b"hello\n"
        except (EOFError, ConnectionError):
            return False

    assert _eventually(new_connection_works)
    assert proxy.stats.refused >= 1


def test_stall_holds_server_data_then_delivers_all_of_it(proxy: Proxy) -> None:
    payload = b"x" * 300_000 + b"\n"
    with _connect(proxy) as sock:
        proxy.stall(FAULT_S)
        started = time.monotonic()
        sock.sendall(payload)
        sock.settimeout(SHORT_TIMEOUT_S)
        with pytest.raises(TimeoutError):
            sock.recv(1)

        sock.settimeout(TIMEOUT_S)
        assert _recv_exactly(sock, len(payload)) == payload
        assert time.monotonic() - started >= FAULT_S


def test_stall_zero_ends_a_stall_early(proxy: Proxy) -> None:
    with _connect(proxy) as sock:
        proxy.stall(60)
        sock.sendall(b"held\n")
        sock.settimeout(SHORT_TIMEOUT_S)
        with pytest.raises(TimeoutError):
            sock.recv(1)

        proxy.stall(0)
        sock.settimeout(TIMEOUT_S)
        assert _recv_exactly(sock, 5) == b"held\n"


def test_blackhole_silences_connections_for_good(proxy: Proxy, echo: _EchoServer) -> None:
    with _connect(proxy) as before:
        _exchange(before, b"ok\n")
        proxy.blackhole = True
        with _connect(proxy) as during:
            for sock in (before, during):
                sock.settimeout(SHORT_TIMEOUT_S)
                with pytest.raises(TimeoutError):
                    _exchange(sock, b"anyone?\n")

            proxy.blackhole = False
            with pytest.raises(TimeoutError):
                _exchange(before, b"back?\n")
            with _connect(proxy) as after:
                assert _exchange(after, b"fresh\n") == b"fresh\n"

    # The connection accepted during the blackhole never reached the server.
    assert echo.accepted == 2


def test_unreachable_target_resets_the_client() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    with (
        Proxy("127.0.0.1", closed_port) as proxy,
        pytest.raises((EOFError, ConnectionError)),
        _connect(proxy) as sock,
    ):
        _exchange(sock, b"hello\n")


def test_hundreds_of_connections_share_one_thread(proxy: Proxy) -> None:
    count = 200
    socks = [_connect(proxy) for _ in range(count)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(b"%d\n" % i)
        replies = [_recv_exactly(sock, len(b"%d\n" % i)) for i, sock in enumerate(socks)]
        assert len(_proxy_threads()) == 1
    finally:
        for sock in socks:
            sock.close()

    assert replies == [b"%d\n" % i for i in range(count)]
    stats = proxy.stats
    assert (stats.connections, stats.client_flights, stats.server_flights) == (count, count, count)


def test_stop_releases_thread_port_and_connections(echo: _EchoServer) -> None:
    host, port = echo.server_address[:2]
    proxy = Proxy(str(host), int(port)).start()
    with _connect(proxy) as sock:
        _exchange(sock, b"hi\n")

        proxy.stop()
        proxy.stop()

        assert _proxy_threads() == []
        with pytest.raises((EOFError, ConnectionError)):
            _exchange(sock, b"after stop\n")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT_S).close()
