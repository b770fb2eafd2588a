"""Integration tests run against the embedded local stack, or against TEST_DATABASE_URL/TEST_DIRECT_DATABASE_URL."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from tools import stack


@dataclass(frozen=True)
class DatabaseTarget:
    """Where integration tests connect: a pooled (transaction-mode) URL and a direct URL, both Neon-console style."""

    pooled_url: str = field(repr=False)
    direct_url: str = field(repr=False)
    pooler_hosts: str
    single_pool_url: str | None = field(repr=False)
    local_stack: bool
    password: str = field(repr=False)


def _target() -> DatabaseTarget:
    pooled = os.environ.get("TEST_DATABASE_URL")
    if pooled:
        direct = os.environ.get("TEST_DIRECT_DATABASE_URL")
        if not direct:
            raise pytest.UsageError("TEST_DATABASE_URL is set: set TEST_DIRECT_DATABASE_URL (the direct URL) too")
        from urllib.parse import unquote, urlsplit

        return DatabaseTarget(
            pooled_url=pooled,
            direct_url=direct,
            pooler_hosts=os.environ.get("DB_POOLER_HOSTS", ""),
            single_pool_url=os.environ.get("TEST_SINGLE_POOL_DATABASE_URL"),
            local_stack=False,
            password=unquote(urlsplit(pooled).password or ""),
        )
    state = stack.up()
    return DatabaseTarget(
        pooled_url=state.database_url,
        direct_url=state.direct_database_url,
        pooler_hosts=state.pooler_hosts,
        single_pool_url=state.single_pool_database_url,
        local_stack=True,
        password=state.password,
    )


@pytest.fixture(scope="session")
def database() -> DatabaseTarget:
    return _target()


@pytest.fixture(scope="session")
def schema(database: DatabaseTarget) -> None:
    """The app's schema, applied once over the direct URL (harmless if it is there already)."""
    from lib.dbkit import migrate

    migrate.migrate({"DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts})


@pytest.fixture(autouse=True)
def _needs_local_stack(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("local_stack") is None:
        return
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("restarts servers of the embedded stack; not run against TEST_DATABASE_URL")
