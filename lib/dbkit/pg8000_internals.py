"""Every use of pg8000's private internals, in one place, and a probe that says whether they are all still there.

The pipelined driver (lib.dbkit.pg_pipeline) overrides and calls pg8000 internals that carry no compatibility
promise. Nothing here fails at import: names are looked up when used, and the engine asks `problems()` first and
falls back to SQLAlchemy's stock pg8000 dialect when anything is missing or the version was never tested.
"""

from __future__ import annotations

import inspect
import re
import select
import socket
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import pg8000.converters
import pg8000.core
import pg8000.dbapi

# Versions whose overridden code paths were read line by line and run through the suite (1.31.4 added
# startup_params; up to 1.31.6 execute_unnamed, send_* and handle_messages are unchanged apart from write batching).
TESTED_RANGE: Final = ((1, 31, 4), (1, 31, 6))
NULL_BYTE: Final = b"\x00"

_CORE_NAMES: Final = ("SYNC_MSG", "FLUSH_MSG", "Context", "CoreConnection", "_flush", "_write")
_CORE_METHODS: Final = (
    "execute_simple",
    "execute_unnamed",
    "handle_messages",
    "send_BIND",
    "send_DESCRIBE_STATEMENT",
    "send_EXECUTE",
    "send_PARSE",
    "send_QUERY",
)
# Assigned in CoreConnection.__init__: the raw socket (timeouts), the buffered stream (writes), the type map.
_INSTANCE_ATTRIBUTES: Final = ("_usock", "_sock", "py_types")


def installed_version() -> str:
    """The installed pg8000 version ("unknown" when its metadata is missing)."""
    try:
        return version("pg8000")
    except PackageNotFoundError:
        return "unknown"


def _parsed(text: str) -> tuple[int, ...] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in match.groups()) if match else None


def problems(found_version: str | None = None) -> list[str]:
    """Why the pipelined driver cannot be used with the installed pg8000 (empty when it can)."""
    found = found_version or installed_version()
    low, high = TESTED_RANGE
    parsed = _parsed(found)
    issues = []
    if parsed is None or not low <= parsed <= high:
        tested = f"{'.'.join(map(str, low))} to {'.'.join(map(str, high))}"
        issues.append(f"pg8000 {found} is outside the tested range {tested}")
    issues += [f"pg8000.core.{name} is missing" for name in _CORE_NAMES if not hasattr(pg8000.core, name)]
    if not hasattr(pg8000.converters, "make_params"):
        issues.append("pg8000.converters.make_params is missing")
    core_connection = getattr(pg8000.core, "CoreConnection", None)
    if core_connection is not None:
        issues += [f"CoreConnection.{name} is missing" for name in _CORE_METHODS if not hasattr(core_connection, name)]
        code = getattr(getattr(core_connection, "__init__", None), "__code__", None)
        assigned = set(code.co_names) if code is not None else set()
        issues += [f"CoreConnection no longer sets {name}" for name in _INSTANCE_ATTRIBUTES if name not in assigned]
    if not hasattr(pg8000.dbapi.Connection, "_in_transaction"):
        issues.append("pg8000.dbapi.Connection._in_transaction is missing")
    return issues


def accepts_startup_params() -> bool:
    """True when pg8000.connect takes ``startup_params`` (needed for Neon's ``options=endpoint=...``)."""
    return "startup_params" in inspect.signature(pg8000.core.CoreConnection.__init__).parameters


def raw_socket(connection: Any) -> socket.socket | None:
    """The connection's TCP (or TLS) socket, for timeouts; None if pg8000 no longer keeps it where we look."""
    sock = getattr(connection, "_usock", None)
    return sock if isinstance(sock, socket.socket) else None


def peer_closed(connection: Any) -> bool:
    """True when an idle connection is being closed by its server: anything waiting on it (EOF, reset, a message)."""
    sock = raw_socket(connection)
    if sock is None:
        return False
    # Between transactions the server has nothing to say: EOF, a reset, or a parting message (57P01 on shutdown, an
    # idle timeout, TLS close_notify) is all that can arrive. A look at the TCP socket (under any TLS), no I/O;
    # a false alarm costs a reconnect, a missed one a failed request.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def stream(connection: Any) -> Any:
    """The buffered file object pg8000 writes messages to (None once the connection is closed)."""
    return connection._sock


def swap_stream(connection: Any, replacement: Any) -> Any:
    """Point pg8000's writes at `replacement`; returns the stream it replaced."""
    previous = connection._sock
    connection._sock = replacement
    return previous


def in_transaction(connection: Any) -> bool:
    """True while the server reports an open (or failed) transaction on this connection."""
    return bool(connection._in_transaction)


def sync_message() -> bytes:
    """The encoded Sync message."""
    message: bytes = pg8000.core.SYNC_MSG
    return message


def flush_message() -> bytes:
    """The encoded Flush message (pg8000 writes one after every Parse, Describe and Execute)."""
    message: bytes = pg8000.core.FLUSH_MSG
    return message


def write(target: Any, data: bytes) -> None:
    """pg8000's write (network errors become InterfaceError)."""
    pg8000.core._write(target, data)


def flush(target: Any) -> None:
    """pg8000's flush (network errors become InterfaceError)."""
    pg8000.core._flush(target)


def new_context(statement: str) -> Any:
    """A pg8000 result context for `statement` (what handle_messages fills)."""
    return pg8000.core.Context(statement)


def make_params(connection: Any, values: Any) -> Any:
    """Encode parameter values with the connection's type map, as pg8000's execute_unnamed does."""
    return pg8000.converters.make_params(connection.py_types, values)


def execute_simple_unpipelined(connection: Any, statement: str) -> Any:
    """pg8000's own simple-query path, bypassing any override on the connection's class."""
    return pg8000.core.CoreConnection.execute_simple(connection, statement)
