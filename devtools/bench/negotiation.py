"""Round trips of one new connection through the Neon stand-in: SSLRequest then TLS, against direct TLS (ALPN)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from devtools.proxy import Proxy
from lib.dbkit import pg_pipeline
from lib.dbkit.dsn import DatabaseUrl, SslNegotiation

NEGOTIATIONS: tuple[SslNegotiation, ...] = ("postgres", "direct")
# Counted with this much one-way delay: with less, the server's TLS 1.3 session tickets sometimes reach the client
# between its Finished and its startup message (a busy client), and one flight counts as two. Here that would take
# 20 ms of client-side work between the two; at 2 ms it happened in a few direct-TLS samples out of 15.
COUNT_DELAY_MS = 10.0
_SETTLE_S = 0.05


@dataclass(frozen=True)
class NewConnection:
    """One negotiation: client flights until the connection was ready (min, max over the runs), median wall ms."""

    negotiation: SslNegotiation
    round_trips: tuple[int, int]
    wall_ms: float


def measure_new_connections(proxy: Proxy, url: DatabaseUrl, runs: int) -> list[NewConnection]:
    """Open `runs` connections per negotiation through `proxy` (in front of the stand-in) and count their flights."""
    found: list[NewConnection] = []
    delay = proxy.delay_ms
    proxy.delay_ms = COUNT_DELAY_MS
    try:
        for negotiation in NEGOTIATIONS:
            target = replace(url, port=proxy.port, sslnegotiation=negotiation)
            flights: list[int] = []
            walls: list[float] = []
            for _ in range(runs):
                trips, wall = _one(proxy, target)
                flights.append(trips)
                walls.append(wall)
            found.append(NewConnection(negotiation, (min(flights), max(flights)), statistics.median(walls)))
    finally:
        proxy.delay_ms = delay
    return found


def _one(proxy: Proxy, url: DatabaseUrl) -> tuple[int, float]:
    time.sleep(_SETTLE_S)  # the previous connection's closing traffic must not count
    proxy.reset_stats()
    started = time.perf_counter()
    connection = pg_pipeline.connect(**url.connect_args())
    wall_ms = (time.perf_counter() - started) * 1000
    trips = proxy.stats.client_flights
    connection.close()
    return trips, wall_ms


def table(rows: Sequence[NewConnection]) -> str:
    """Markdown: one row per negotiation."""
    names = {"postgres": "SSLRequest, then TLS (default)", "direct": "direct TLS (`sslnegotiation=direct`)"}
    lines = ["| new connection | round trips | wall ms |", "|---|---|---|"]
    for row in rows:
        low, high = row.round_trips
        trips = str(low) if low == high else f"{low}-{high}"
        lines.append(f"| {names[row.negotiation]} | {trips} | {row.wall_ms:.1f} |")
    return "\n".join(lines)
