"""PgBouncer's admin console: how long server connections were held (SHOW STATS) and how many are in use (SHOW POOLS).

The console speaks only the simple query protocol, so it is read with pg8000's ``execute_simple``. It is reached on
PgBouncer's own port (never through the counting proxy) as the stack's ``admin_users``/``stats_users`` user.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import pg8000.native

from lib.dbkit.dsn import DatabaseUrl, parse_database_url

ADMIN_DATABASE = "pgbouncer"


@dataclass(frozen=True)
class PoolerTotals:
    """SHOW STATS totals of one pooled database: transactions, queries and the microseconds servers were held."""

    transactions: int = 0
    queries: int = 0
    xact_time_us: int = 0
    wait_time_us: int = 0

    def __sub__(self, other: PoolerTotals) -> PoolerTotals:
        return PoolerTotals(
            self.transactions - other.transactions,
            self.queries - other.queries,
            self.xact_time_us - other.xact_time_us,
            self.wait_time_us - other.wait_time_us,
        )


@dataclass(frozen=True)
class PoolUsage:
    """SHOW POOLS of one pooled database (all users): server connections by state, clients waiting for one."""

    server_active: int = 0
    server_idle: int = 0
    server_used: int = 0
    server_login: int = 0
    clients_active: int = 0
    clients_waiting: int = 0

    @property
    def servers_open(self) -> int:
        return self.server_active + self.server_idle + self.server_used + self.server_login


class PoolerConsole:
    """A connection to PgBouncer's admin console, reading the figures of one pooled database."""

    def __init__(self, url: str | DatabaseUrl, *, port: int | None = None) -> None:
        parsed = parse_database_url(url) if isinstance(url, str) else url
        self.database = parsed.database or parsed.user
        context = ssl.create_default_context(cafile=parsed.sslrootcert)
        self._connection = pg8000.native.Connection(
            user=parsed.user,
            password=parsed.password,
            host=parsed.host,
            port=port or parsed.port,
            database=ADMIN_DATABASE,
            ssl_context=context,
        )

    def _rows(self, command: str) -> list[dict[str, Any]]:
        result = self._connection.execute_simple(command)
        names = [column["name"] for column in result.columns]
        return [dict(zip(names, row, strict=True)) for row in result.rows if row[0] == self.database]

    def totals(self) -> PoolerTotals:
        """Counters since PgBouncer started (zeros before the database's first client)."""
        rows = self._rows("SHOW STATS")
        if not rows:
            return PoolerTotals()
        row = rows[0]
        return PoolerTotals(
            int(row["total_xact_count"]),
            int(row["total_query_count"]),
            int(row["total_xact_time"]),
            int(row["total_wait_time"]),
        )

    def pools(self) -> PoolUsage:
        """Server and client connections of the database right now, summed over users."""
        rows = self._rows("SHOW POOLS")
        return PoolUsage(
            *(
                sum(int(row[name]) for row in rows)
                for name in ("sv_active", "sv_idle", "sv_used", "sv_login", "cl_active", "cl_waiting")
            )
        )

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> PoolerConsole:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
