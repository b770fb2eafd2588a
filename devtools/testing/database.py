"""Where integration tests connect: the embedded local stack, or TEST_DATABASE_URL/TEST_DIRECT_DATABASE_URL."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from devtools import stack


@dataclass(frozen=True)
class DatabaseTarget:
    """Where integration tests connect: a pooled (transaction-mode) URL and a direct URL, both Neon-console style.

    Locally the pooled URL goes through the Neon stand-in (devtools/neon_standin.py) to PgBouncer; ``pooler_url``
    is PgBouncer itself, for tests of the driver and the pooler that stock pg8000 (no ``hostaddr``) must reach.
    Against TEST_DATABASE_URL both are that URL, and there is no stand-in to control.
    """

    pooled_url: str = field(repr=False)
    direct_url: str = field(repr=False)
    pooler_hosts: str
    single_pool_url: str | None = field(repr=False)
    local_stack: bool
    password: str = field(repr=False)
    pooler_url: str = field(repr=False)
    standin_control: str | None = None
    # The read replica's pooled URL (the stack's hot standby through the stand-in; TEST_DATABASE_READ_URL on Neon).
    read_url: str | None = field(default=None, repr=False)


def target() -> DatabaseTarget:
    """The database the tests use: TEST_DATABASE_URL's, or the local stack's (started when it is not running)."""
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
            pooler_url=pooled,
            read_url=os.environ.get("TEST_DATABASE_READ_URL") or None,
        )
    state = stack.up()
    return DatabaseTarget(
        pooled_url=state.database_url,
        direct_url=state.direct_database_url,
        pooler_hosts=state.pooler_hosts,
        single_pool_url=state.single_pool_database_url,
        local_stack=True,
        password=state.password,
        pooler_url=state.pgbouncer_database_url,
        standin_control=state.standin_control,
        read_url=state.database_read_url,
    )
