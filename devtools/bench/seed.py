"""The seed configuration: the engine a typical FastAPI + SQLAlchemy guide builds, kept as the bench's fixed baseline.

QueuePool 5/10 with ``pool_pre_ping`` on the stock ``postgresql+pg8000`` dialect, built with ``create_engine``
directly (not through the kit's settings/engine) so it stays the baseline whatever the template's engine becomes.
The psycopg 3 peers are the same on a ``postgresql+psycopg`` engine (create_psycopg_engine). The bench runs the
app's own handlers (named in template.yaml) on these engines in place of the kit's (GuideEngines): the same routes,
SQL and Powertools decorators as the template profiles, so the only difference measured is the connection layer,
and the baseline is whatever app the template holds, never a copy of it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from sqlalchemy import URL, Engine, NullPool, create_engine

from lib.dbkit.dsn import DatabaseUrl
from lib.dbkit.engine import EngineHolder
from lib.dbkit.settings import Settings


def create_seed_engine(url: DatabaseUrl) -> Engine:
    """QueuePool 5/10 + pre-ping on the plain pg8000 dialect; TLS verified against the URL's CA file."""
    return create_engine(
        url.sqlalchemy_url(),
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"ssl_context": ssl.create_default_context(cafile=url.sslrootcert)},
    )


def create_psycopg_engine(url: DatabaseUrl, *, pool: str, autocommit: bool = False) -> Engine:
    """psycopg 3 through ``postgresql+psycopg`` as SQLAlchemy's docs set it up behind PgBouncer: no prepared statements.

    pool="null": NullPool, a new connection per request; pool="tiny": one pooled connection (pool_size=1, no
    overflow, no pre-ping). autocommit=True: ``isolation_level="AUTOCOMMIT"``, no BEGIN/COMMIT at all; safe behind a
    transaction pooler with libpq, which ends every statement with its own Sync, though a unit of several statements
    is then no longer atomic.
    """
    target = URL.create(
        "postgresql+psycopg",
        username=url.user,
        password=url.password,
        host=url.host,
        port=url.port,
        database=url.database,
        query={"sslmode": "verify-full", "sslrootcert": url.sslrootcert or ""},
    )
    # prepare_threshold=None: psycopg would otherwise prepare a statement on its 5th use, which a transaction
    # pooler without protocol-level prepared statement support (PgBouncer < 1.21) routes to the wrong server.
    options: dict[str, Any] = {"connect_args": {"prepare_threshold": None}}
    if pool == "null":
        options["poolclass"] = NullPool
    elif pool == "tiny":
        options.update(pool_size=1, max_overflow=0)
    else:
        raise ValueError(f"unknown pool {pool!r}: null or tiny")
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    return create_engine(target, **options)


class GuideEngines(EngineHolder):
    """An execution environment whose engine is a guide's (`build`), not the kit's, and which has no read replica.

    Run the app's handler inside ``lib.dbkit.engine.execution_environment(GuideEngines(...))``: its units of work
    then run on this engine, with none of the kit's engine events (server-side limits, idle ping, pipelining).
    """

    def __init__(self, url: DatabaseUrl, build: Callable[[DatabaseUrl], Engine]) -> None:
        super().__init__()
        self._url = url
        self._build = build
        self._guide_engine: Engine | None = None
        self._guide_settings: Settings | None = None

    def engine(self) -> Engine:
        if self._guide_engine is None:
            self._guide_engine = self._build(self._url)
        return self._guide_engine

    def engine_settings(self) -> Settings:
        # run_in_transaction reads only the replica from these: a guide's app has none.
        if self._guide_settings is None:
            self._guide_settings = Settings(database=self._url)
        return self._guide_settings

    def replica_engine(self) -> Engine | None:
        return None

    def dispose(self) -> None:
        if self._guide_engine is not None:
            self._guide_engine.dispose()
        self._guide_engine = None
