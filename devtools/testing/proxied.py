"""The app behind devtools/proxy.py: round trips counted, replies lost on demand (integration tests share these)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from devtools.proxy import Proxy
from devtools.testing.lambda_runtime import configure_serverless
from devtools.testing.urls import connect_address, pooler_entry, with_port


@contextmanager
def proxied_app(pooled_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    """The app in serverless mode, talking to the pooler through a round-trip-counting, fault-injecting proxy."""
    from lib.dbkit import engine

    host, port = connect_address(pooled_url)
    with Proxy("127.0.0.1" if host == "localhost" else host, port) as proxy:
        url = with_port(pooled_url, proxy.port)
        configure_serverless(monkeypatch, pooled_url=url, pooler_hosts=pooler_entry(pooled_url, proxy.port))
        try:
            yield proxy
        finally:
            engine.dispose_engine()


def flights(proxy: Proxy, action: Callable[[], Any]) -> int:
    """Round trips (client flights) of one action."""
    proxy.reset_stats()
    action()
    return proxy.stats.client_flights


class ReplyLost:
    """Arms the proxy so the reply to what the client sends next never arrives: held, then the connection is reset."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.armed = 0

    def arm(self) -> None:
        self.armed += 1
        self.proxy.stall(10)
        threading.Timer(0.3, self._cut).start()

    def _cut(self) -> None:
        self.proxy.drop_connections()
        self.proxy.stall(0)
