"""Read-only units on the read replica: the staleness guard, the commit LSN a client carries, and when to fall back.

A read-only unit runs on the replica when one is configured (``DATABASE_READ_URL`` & co.); it runs on the primary
instead, with one log line and a ``DbReplicaFallback`` metric, when the replica cannot serve it: refused, waking
for longer than the connect budget, its connection lost, lagging more than ``DB_REPLICA_MAX_LAG``, or not yet
past the commit the caller must see (``after_lsn``). The checks ride in the flight of the unit's first statement:
a guard statement that raises one of this module's SQLSTATEs, so the server aborts the unit before it reads.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

import sqlalchemy.exc

from lib.dbkit.errors import ConfigError, DatabaseProviderRefusedError, InvalidLsnError
from lib.dbkit.pg_errors import describe, is_network_failure, is_retryable_connect_failure, sqlstate

PRIMARY: Final = "primary"
REPLICA: Final = "replica"
# Raised by the guard (class DB: the kit's own codes, beside lib.dbkit.pg_pipeline's DBK01).
LAG_SQLSTATE: Final = "DBK02"
BEHIND_COMMIT_SQLSTATE: Final = "DBK03"
# A standby cancels a query that conflicts with WAL it must replay (a vacuumed row, a lock): safe to re-run.
RECOVERY_CONFLICT_SQLSTATE: Final = "40001"
# Read after a write unit's COMMIT, in the same flight: the insert position is past the commit record, even with
# synchronous_commit=off (pg_current_wal_lsn() may still be before it).
COMMIT_LSN_SQL: Final = "SELECT pg_current_wal_insert_lsn()::text"
# How long an environment sends read-only units straight to the primary after the replica could not connect: a
# refusal or an unreachable compute is not retried on every request (each try costs a connect attempt).
UNREACHABLE_COOLDOWN_SECONDS: Final = 5.0
REFUSED_COOLDOWN_SECONDS: Final = 60.0
# The HTTP header that carries a write's commit LSN to the client and back: a write's response sets it, and a read
# that sends it is served by the replica only once the replica has replayed that far (else by the primary).
READ_AFTER_HEADER: Final = "Read-After"

_LSN: Final = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")
_commit_lsn: ContextVar[str | None] = ContextVar("dbkit_commit_lsn", default=None)


def parse_lsn(text: str) -> str:
    """A WAL position as Postgres prints it (``16/B374D848``), normalised; InvalidLsnError for anything else."""
    value = text.strip().upper()
    if not _LSN.fullmatch(value):
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise InvalidLsnError(f"{shown!r} is not a WAL position (expected two hex numbers like 16/B374D848)")
    return value


def guard_sql(*, max_lag: float | None, after_lsn: str | None) -> str | None:
    """The statement that refuses to let a read-only unit run on a replica too far behind; None when none applies.

    Lag is the time since the last replayed commit, counted only while the replica has WAL it has not replayed:
    an idle primary sends nothing, so an old replay timestamp alone does not mean lag (the rule of
    prometheus-community/postgres_exporter's pg_replication query). On a server not in recovery (a primary, a
    promoted replica) the guard passes: it is as fresh as it gets.
    """
    checks: list[str] = []
    if max_lag is not None:
        checks.append(
            "IF pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn() AND "
            f"coalesce(now() - pg_last_xact_replay_timestamp() > interval '{max_lag:.3f} seconds', true) THEN "
            f"RAISE EXCEPTION USING ERRCODE = '{LAG_SQLSTATE}', "
            "MESSAGE = 'the read replica lags more than DB_REPLICA_MAX_LAG'; END IF;"
        )
    if after_lsn is not None:
        lsn = parse_lsn(after_lsn)  # never anything but hex digits and a slash inside the literal
        checks.append(
            f"IF coalesce(pg_last_wal_replay_lsn() < '{lsn}'::pg_lsn, true) THEN "
            f"RAISE EXCEPTION USING ERRCODE = '{BEHIND_COMMIT_SQLSTATE}', "
            "MESSAGE = 'the read replica has not replayed the commit this read must see'; END IF;"
        )
    if not checks:
        return None
    return f"DO $$BEGIN IF pg_is_in_recovery() THEN {' '.join(checks)} END IF; END$$"


def commit_lsn() -> str | None:
    """Where the WAL stood right after this invocation's last write unit committed (None: none, or no replica).

    Hand it to the client (a response header, say); a later read that must see the write passes it back as
    ``after_lsn=``, and runs on the replica only once the replica has replayed that far.
    """
    return _commit_lsn.get()


def record_commit_lsn(lsn: str | None) -> None:
    """Remember the commit LSN of the write unit that just committed."""
    _commit_lsn.set(lsn)


def read_after(value: str | None) -> str | None:
    """The ``after_lsn`` a request's Read-After header asks for (None without one); InvalidLsnError when malformed."""
    if value is None:
        return None
    try:
        return parse_lsn(value)
    except InvalidLsnError as error:
        raise InvalidLsnError(
            f"{READ_AFTER_HEADER} header: {error}; send back a write's {READ_AFTER_HEADER} value unchanged"
        ) from None


def read_after_headers() -> dict[str, str]:
    """The response headers of a write that committed: its commit LSN as Read-After; none without a replica."""
    lsn = commit_lsn()
    return {READ_AFTER_HEADER: lsn} if lsn is not None else {}


def begin_invocation() -> None:
    """A new invocation has written nothing yet."""
    _commit_lsn.set(None)


@dataclass(frozen=True)
class Fallback:
    """Why a read-only unit ran on the primary instead of the replica."""

    reason: str
    cooldown: float = 0.0  # seconds the environment skips the replica after this
    details: dict[str, str | None] = field(default_factory=dict)


class ReplicaUnavailableError(Exception):
    """The replica could not serve the unit (never leaves run_in_transaction: the unit runs on the primary)."""

    def __init__(self, fallback: Fallback) -> None:
        super().__init__(fallback.reason)
        self.fallback = fallback


def fallback_for(error: BaseException, *, connected: bool) -> Fallback | None:
    """The fallback a replica failure calls for; None for an error the unit's own work caused (raised as is).

    `connected`: the unit had its connection (the failure came from a statement), else the connect failed.
    """
    code = sqlstate(error)
    shown = {"error": type(error).__name__, "sqlstate": code}
    if not connected:
        if isinstance(error, sqlalchemy.exc.TimeoutError):
            return Fallback("replica pool exhausted", details=shown)
        if isinstance(error, DatabaseProviderRefusedError):
            details = {**shown, "provider_reason": error.reason, "action": error.action}
            return Fallback("replica refused by the provider", REFUSED_COOLDOWN_SECONDS, details)
        if isinstance(error, ConfigError):
            # The replica's URL or secret is wrong: reads still work, on the primary; the message names the fix.
            return Fallback("replica misconfigured", REFUSED_COOLDOWN_SECONDS, {**shown, "fix": str(error)})
        # Whatever else stopped the connect (a refusal, a compute waking past the budget, a network error): the
        # unit has sent nothing, and the primary may well be up.
        return Fallback("replica unreachable", UNREACHABLE_COOLDOWN_SECONDS, {**shown, "detail": describe(error)})
    if code == LAG_SQLSTATE:
        return Fallback("replica lags more than DB_REPLICA_MAX_LAG", details=shown)
    if code == BEHIND_COMMIT_SQLSTATE:
        return Fallback("replica has not replayed the commit the read must see", details=shown)
    if code == RECOVERY_CONFLICT_SQLSTATE:
        return Fallback("replica cancelled the read (conflict with recovery)", details=shown)
    if _connection_lost(error):
        return Fallback("replica connection lost", details=shown)
    return None


def _connection_lost(error: BaseException) -> bool:
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        return bool(error.connection_invalidated) or is_network_failure(error.orig)
    return is_network_failure(error) or is_retryable_connect_failure(error)
