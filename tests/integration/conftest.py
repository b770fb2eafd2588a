"""Integration tests run against the embedded local stack, or against TEST_DATABASE_URL/TEST_DIRECT_DATABASE_URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from devtools import stack
from devtools.neon_standin import StandinControl
from tests.support.http_api import ApiServer, running_api


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


@pytest.fixture(scope="session")
def database() -> DatabaseTarget:
    return _target()


@pytest.fixture(scope="session")
def schema(database: DatabaseTarget) -> None:
    """The schema, migrated once to both Alembic heads over the direct URL (harmless if it is there already)."""
    from devtools import migrate

    migrate.upgrade({"DIRECT_DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts})


@pytest.fixture
def isolated_notes(database: DatabaseTarget, schema: None) -> Iterator[Session]:
    """A Session on a direct connection inside a transaction that starts with no notes and is rolled back at the end.

    Data-level tests see exactly the rows they create, whatever earlier runs left behind, and leave nothing. The
    data functions never commit, so no SAVEPOINT is needed (SQLAlchemy's join_transaction_mode recipe is for a
    Session that does).
    """
    from lib.dbkit.engine import build_engine
    from lib.dbkit.settings import Settings

    settings = Settings.from_env(
        {"DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts, "DB_MODE": "migration"}
    )
    engine = build_engine(settings)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            connection.execute(text("DELETE FROM notes"))  # row locks only; rolled back with everything else
            try:
                with Session(bind=connection) as session:
                    yield session
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def api_server(database: DatabaseTarget, schema: None) -> Iterator[ApiServer]:
    """`make api`'s server for the template, on a free port, against the test database; stopped as Ctrl-C does.

    Everything it printed (the functions' logs included) is scanned for the database password at the end.
    """
    from tests.support.secrets import assert_no_secret

    with running_api({"DATABASE_URL": database.pooled_url, "DB_POOLER_HOSTS": database.pooler_hosts}) as server:
        yield server
    assert_no_secret(database.password, *server.stdout, *server.stderr)


@pytest.fixture(scope="module")
def serverless_for_module(database: DatabaseTarget, schema: None) -> Iterator[None]:
    """The app configured for serverless mode on the pooled URL for a whole test module (hypothesis-driven tests)."""
    from tests.lambda_runtime import configure_serverless, reset_database_state

    with pytest.MonkeyPatch.context() as monkeypatch:
        configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
        yield
        reset_database_state()


@pytest.fixture(autouse=True)
def _needs_local_stack(request: pytest.FixtureRequest) -> None:
    if not os.environ.get("TEST_DATABASE_URL"):
        return
    if request.node.get_closest_marker("local_stack") is not None:
        pytest.skip("restarts servers of the embedded stack; not run against TEST_DATABASE_URL")
    if request.node.get_closest_marker("neon_standin") is not None:
        pytest.skip("plays Neon scenarios on the local Neon stand-in; not run against TEST_DATABASE_URL")


@pytest.fixture
def standin(database: DatabaseTarget) -> Iterator[StandinControl]:
    """The local Neon stand-in's scenario controls, reset before and after the test."""
    if database.standin_control is None:
        pytest.skip("needs the local Neon stand-in (not there with TEST_DATABASE_URL)")
    control = StandinControl.parse(database.standin_control)
    control.reset()
    yield control
    control.reset()
