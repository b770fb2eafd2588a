"""Unit tests run with the network blocked: any IP socket connect or name lookup fails the test."""

from __future__ import annotations

import socket
from typing import Any

import pytest


class NetworkBlockedError(RuntimeError):
    """A unit test tried to use the network."""


def _blocked(*_args: Any, **_kwargs: Any) -> Any:
    raise NetworkBlockedError("unit tests must not touch the network; move this test to tests/integration")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    original_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _blocked()
        original_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _blocked)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)
