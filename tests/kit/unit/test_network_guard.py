import socket

import pytest

from devtools.pytest_plugin import NetworkBlockedError


def test_tcp_connect_is_refused_in_unit_tests() -> None:
    with pytest.raises(NetworkBlockedError), socket.create_connection(("127.0.0.1", 5432), timeout=1):
        pass


def test_name_lookup_is_refused_in_unit_tests() -> None:
    with pytest.raises(NetworkBlockedError):
        socket.getaddrinfo("localhost", 5432)


def test_raw_socket_connect_is_refused_in_unit_tests() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(NetworkBlockedError):
        sock.connect(("127.0.0.1", 5432))
