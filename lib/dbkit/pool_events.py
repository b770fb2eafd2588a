"""Pool events to CloudWatch: one DEBUG line per event, one INFO summary and EMF metrics per invocation.

Each engine's events carry its role: ``primary``, or ``replica`` for the read replica's engine, whose counters are
summarised beside the primary's (``replica_pool_summary``) and measured as ``DbReplica*`` metrics (names, not a
dimension: the primary's series and the alarms on them stay as they are).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from sqlalchemy import Engine, event
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, Pool, PoolProxiedConnection, QueuePool

from lib.dbkit.observability import logger, metrics
from lib.dbkit.replica import PRIMARY, REPLICA

# Connection ids are stable for the life of a DBAPI connection and unique across execution environments.
_ENVIRONMENT_TAG = secrets.token_hex(3)
_connection_numbers = itertools.count(1)


@dataclass
class InvocationStats:
    """What one invocation did with the pool; logged once at its end."""

    request_id: str | None = None
    connections_opened: int = 0
    checkouts: int = 0
    invalidations: int = 0
    checkout_wait_ms: float = 0.0
    connect_retries: int = 0
    pool_exhausted: int = 0
    idle_pings: int = 0
    # Read-only units (counted on the primary's summary): served by the read replica, or run here instead.
    replica_reads: int = 0
    replica_fallbacks: int = 0


_stats: ContextVar[dict[str, InvocationStats] | None] = ContextVar("pool_invocation_stats", default=None)
_checkout_started: ContextVar[float | None] = ContextVar("pool_checkout_started", default=None)


def current(role: str = PRIMARY) -> InvocationStats:
    """The running invocation's counters for an engine's role (a fresh, unlogged set outside an invocation)."""
    by_role = _stats.get()
    if by_role is None:
        by_role = {}
        _stats.set(by_role)
    stats = by_role.get(role)
    if stats is None:
        primary = by_role.get(PRIMARY)
        stats = by_role[role] = InvocationStats(request_id=primary.request_id if primary else None)
    return stats


def begin_invocation(request_id: str | None) -> None:
    _stats.set({PRIMARY: InvocationStats(request_id=request_id)})


def end_invocation() -> None:
    stats = current()
    replica = (_stats.get() or {}).get(REPLICA)
    line: dict[str, Any] = {"pool_summary": asdict(stats)}
    if replica is not None:
        line["replica_pool_summary"] = asdict(replica)
    logger.info("pool summary", extra=line)
    metrics.add_metric(name="DbConnectionsOpened", unit=MetricUnit.Count, value=stats.connections_opened)
    metrics.add_metric(name="DbCheckoutWait", unit=MetricUnit.Milliseconds, value=round(stats.checkout_wait_ms, 3))
    metrics.add_metric(name="DbInvalidations", unit=MetricUnit.Count, value=stats.invalidations)
    metrics.add_metric(name="DbPoolExhausted", unit=MetricUnit.Count, value=stats.pool_exhausted)
    metrics.add_metric(name="DbConnectRetries", unit=MetricUnit.Count, value=stats.connect_retries)
    if stats.replica_reads or stats.replica_fallbacks or replica is not None:
        # Only invocations that had read-only units on an environment with a replica: the fallback rate's base.
        metrics.add_metric(name="DbReplicaReads", unit=MetricUnit.Count, value=stats.replica_reads)
        metrics.add_metric(name="DbReplicaFallback", unit=MetricUnit.Count, value=stats.replica_fallbacks)
        opened = replica.connections_opened if replica is not None else 0
        retries = replica.connect_retries if replica is not None else 0
        metrics.add_metric(name="DbReplicaConnectionsOpened", unit=MetricUnit.Count, value=opened)
        metrics.add_metric(name="DbReplicaConnectRetries", unit=MetricUnit.Count, value=retries)
    _stats.set(None)


def checkout_starting() -> None:
    """Mark the moment a caller asks the pool for a connection, so the checkout event can report the wait."""
    _checkout_started.set(time.perf_counter())


class TimedQueuePool(QueuePool):
    """QueuePool that marks when each checkout starts: the checkout event reports the real wait, whoever asked."""

    def connect(self) -> PoolProxiedConnection:
        checkout_starting()
        return super().connect()


class TimedNullPool(NullPool):
    """NullPool that marks when each checkout starts (see TimedQueuePool)."""

    def connect(self) -> PoolProxiedConnection:
        checkout_starting()
        return super().connect()


def connection_id(record: ConnectionPoolEntry | None) -> str | None:
    return record.info.get("connection_id") if record is not None else None


def _pool_status(pool: Pool) -> dict[str, int] | str:
    if isinstance(pool, QueuePool):
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            "checked_in": pool.checkedin(),
            "overflow": pool.overflow(),
        }
    return type(pool).__name__


def _log(name: str, pool: Pool, record: ConnectionPoolEntry | None, **fields: Any) -> None:
    if logger.log_level > logging.DEBUG:
        return
    connected_at = record.info.get("connected_at") if record is not None else None
    line = {
        "pool_event": name,
        "connection_id": connection_id(record),
        "connection_age_s": round(time.monotonic() - connected_at, 3) if connected_at is not None else None,
        "pool": _pool_status(pool),
        "request_id": current().request_id,
        **fields,
    }
    logger.debug(f"pool {name}", extra=line)


def _identify(record: ConnectionPoolEntry) -> None:
    # first_connect fires before connect for the engine's first connection: whichever comes first names it.
    if "connection_id" not in record.info:
        record.info["connection_id"] = f"{_ENVIRONMENT_TAG}-{next(_connection_numbers)}"
        record.info["connected_at"] = time.monotonic()


def attach(engine: Engine, role: str = PRIMARY) -> None:
    """Listen to every pool event of the engine; its lines and counters carry `role`."""
    pool = engine.pool

    @event.listens_for(pool, "first_connect")
    def on_first_connect(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        _identify(record)
        _log("first_connect", pool, record, role=role)

    @event.listens_for(pool, "connect")
    def on_connect(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        _identify(record)
        current(role).connections_opened += 1
        _log("connect", pool, record, role=role)

    @event.listens_for(pool, "checkout")
    def on_checkout(_dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        started = _checkout_started.get()
        wait_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        _checkout_started.set(None)
        stats = current(role)
        stats.checkouts += 1
        stats.checkout_wait_ms += wait_ms
        _log("checkout", pool, record, role=role, checkout_wait_ms=round(wait_ms, 3))

    @event.listens_for(pool, "checkin")
    def on_checkin(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()
        _log("checkin", pool, record, role=role)

    @event.listens_for(pool, "reset")
    def on_reset(_dbapi: Any, record: ConnectionPoolEntry, reset_state: Any) -> None:
        _log("reset", pool, record, role=role, terminate_only=getattr(reset_state, "terminate_only", None))

    @event.listens_for(pool, "invalidate")
    def on_invalidate(_dbapi: Any, record: ConnectionPoolEntry, exception: BaseException | None) -> None:
        current(role).invalidations += 1
        _log("invalidate", pool, record, role=role, reason=type(exception).__name__ if exception else None)

    @event.listens_for(pool, "soft_invalidate")
    def on_soft_invalidate(_dbapi: Any, record: ConnectionPoolEntry, exception: BaseException | None) -> None:
        current(role).invalidations += 1
        _log("soft_invalidate", pool, record, role=role, reason=type(exception).__name__ if exception else None)

    @event.listens_for(pool, "close")
    def on_close(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        _log("close", pool, record, role=role)

    @event.listens_for(pool, "detach")
    def on_detach(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        _log("detach", pool, record, role=role)

    @event.listens_for(pool, "close_detached")
    def on_close_detached(_dbapi: Any) -> None:
        _log("close_detached", pool, None, role=role)
