"""Per-invocation state: the Lambda deadline that bounds retries and statements, and the pool summary line."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from lib.dbkit import pool_events, replica

# Outside Lambda (server mode, scripts) there is no deadline; retries still need a bound.
DEFAULT_BUDGET_SECONDS = 30.0

_deadline: ContextVar[float | None] = ContextVar("lambda_deadline", default=None)

R = TypeVar("R")


class LambdaContext(Protocol):
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


def remaining_seconds() -> float:
    """Seconds left before this invocation's deadline (DEFAULT_BUDGET_SECONDS when not in Lambda)."""
    deadline = _deadline.get()
    if deadline is None:
        return DEFAULT_BUDGET_SECONDS
    return deadline - time.monotonic()


def has_deadline() -> bool:
    """True inside a Lambda invocation (lambda_entry), where statements must end before the deadline."""
    return _deadline.get() is not None


def start(context: LambdaContext | None) -> None:
    """Record the deadline of the invocation that is starting and reset the per-invocation pool counters."""
    remaining_ms = context.get_remaining_time_in_millis() if context is not None else None
    _deadline.set(time.monotonic() + remaining_ms / 1000 if remaining_ms is not None else None)
    pool_events.begin_invocation(context.aws_request_id if context is not None else None)
    replica.begin_invocation()


def finish() -> None:
    """Log the invocation's pool summary and add its metrics (flushed by the handler's log_metrics)."""
    pool_events.end_invocation()
    _deadline.set(None)


def lambda_entry(handler: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
    """Decorate a Lambda handler: bound its database work by the deadline and summarise its pool use."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> R:
        start(context)
        try:
            return handler(event, context)
        finally:
            finish()

    return wrapper
