"""The pytest plugin every test tier loads (pyproject: ``-p devtools.pytest_plugin``): tiers, stack, events, invocation.

App tests, the kit's tiers and the tooling's own tests use the same fixtures:

- ``database``: where integration tests connect (the embedded local stack, started when needed, or
  TEST_DATABASE_URL/TEST_DIRECT_DATABASE_URL); ``schema``: both Alembic histories migrated to head once.
- ``serverless_for_module``: the functions configured for serverless mode on the pooled URL (``configure_serverless``
  from devtools.testing.lambda_runtime does it for one test).
- ``api_server``: `make api`'s server on a free port; ``standin``: the local Neon stand-in's scenario controls.
- ``direct``: a plain engine on the direct URL (server mode), to set up or look at what a test did beside the app.
- ``replica_url``: the read replica's pooled URL (the test is skipped without one); ``standby``: a plain engine on
  it (what the replica has replayed); ``replica_app``: the app in serverless mode with the read replica;
  ``replica``: the stand-in's controls for the replica's endpoint alone (devtools.testing.replica has the rest).
- ``throwaway``, ``other_throwaway``: new, empty databases on the test server for one test (migration tests;
  devtools.testing.migrations has what they run on them).
- ``no_password_in_logs``: every log line of a test scanned for the database password (the fault and load tiers
  use it on every test).
- Events come from events/ through devtools.events (``load_event``); a handler is called as Lambda would with
  devtools.testing.lambda_runtime.FakeLambdaContext, or through the local runtime (devtools.invoke).

A test's tier is the folder it lives in (``unit``, ``integration``, ``faults``, ``load``): it gets that marker, so
``-m unit`` selects by tier, and ``unit`` tests run with the network blocked.

The app's and the kit's modules are imported inside the fixtures, not at the top: this plugin is imported while
pytest's output capture is off, and the Powertools logger binds whatever sys.stdout is when
lib.dbkit.observability is first imported (devtools.invoke's log recording relies on it being pytest's stream).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devtools.testing.database import DatabaseTarget, target
from lib.dbkit.settings import READ_URL_VARIABLES, Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from devtools.neon_standin import StandinControl
    from devtools.testing.http_api import ApiServer
    from devtools.testing.migrations import Throwaway

TIERS = ("unit", "integration", "faults", "load")
# The suite runs without a read replica (.stack/env names one, and `make test` exports it): read-only units
# would otherwise go to the hot standby, whose replay a read right after a write may not have reached yet.
# Tests of the replica configure it where they test it.
REPLICA_VARIABLES = (*READ_URL_VARIABLES, "DB_REPLICA_MAX_LAG", "DB_REPLICA_CONNECT_BUDGET")


class NetworkBlockedError(RuntimeError):
    """A unit test tried to use the network."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(autouse=True, scope="session")
def _no_read_replica_unless_a_test_asks() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in REPLICA_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        yield


def _blocked(*_args: Any, **_kwargs: Any) -> Any:
    raise NetworkBlockedError("unit tests must not touch the network; move this test to an integration folder")


@pytest.fixture(autouse=True)
def _no_network_in_unit_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run with the network blocked: any IP socket connect or name lookup fails the test."""
    if request.node.get_closest_marker("unit") is None:
        return
    original_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _blocked()
        original_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _blocked)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)


@pytest.fixture(scope="session")
def database() -> DatabaseTarget:
    return target()


@pytest.fixture(scope="session")
def schema(database: DatabaseTarget) -> None:
    """The schema, migrated once to both Alembic heads over the direct URL (harmless if it is there already)."""
    from devtools import migrate

    migrate.upgrade({"DIRECT_DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts})


@pytest.fixture(scope="session")
def api_server(database: DatabaseTarget, schema: None) -> Iterator[ApiServer]:
    """`make api`'s server for the template, on a free port, against the test database; stopped as Ctrl-C does.

    Everything it printed (the functions' logs included) is scanned for the database password at the end.
    """
    from devtools.testing.http_api import running_api
    from devtools.testing.secrets import assert_no_secret

    with running_api({"DATABASE_URL": database.pooled_url, "DB_POOLER_HOSTS": database.pooler_hosts}) as server:
        yield server
    assert_no_secret(database.password, *server.stdout, *server.stderr)


@pytest.fixture(scope="module")
def serverless_for_module(database: DatabaseTarget, schema: None) -> Iterator[None]:
    """The app configured for serverless mode on the pooled URL for a whole test module (hypothesis-driven tests)."""
    from devtools.testing.lambda_runtime import configure_serverless, reset_database_state

    with pytest.MonkeyPatch.context() as monkeypatch:
        configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
        yield
        reset_database_state()


@pytest.fixture(scope="session")
def _migration_admin(database: DatabaseTarget) -> Iterator[Engine]:
    from devtools.testing.migrations import admin_engine

    engine = admin_engine(database)
    yield engine
    engine.dispose()


@pytest.fixture
def throwaway(database: DatabaseTarget, _migration_admin: Engine) -> Iterator[Throwaway]:
    """A new, empty database on the test server, over the direct URL; dropped after the test."""
    from devtools.testing.migrations import throwaway_database

    with throwaway_database(database, _migration_admin) as made:
        yield made


@pytest.fixture
def other_throwaway(database: DatabaseTarget, _migration_admin: Engine) -> Iterator[Throwaway]:
    """A second throwaway database, for comparing two ways of making the same schema."""
    from devtools.testing.migrations import throwaway_database

    with throwaway_database(database, _migration_admin) as made:
        yield made


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
    from devtools.neon_standin import StandinControl

    if database.standin_control is None:
        pytest.skip("needs the local Neon stand-in (not there with TEST_DATABASE_URL)")
    control = StandinControl.parse(database.standin_control)
    control.reset()
    yield control
    control.reset()


@pytest.fixture(scope="module")
def direct(database: DatabaseTarget) -> Iterator[Engine]:
    from lib.dbkit.engine import build_engine

    engine = build_engine(Settings.from_env({"DATABASE_URL": database.direct_url, "DB_MODE": "server"}))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def replica_url(database: DatabaseTarget) -> str:
    if database.read_url is None:
        pytest.skip("no read replica: the local stack has one; against Neon set TEST_DATABASE_READ_URL")
    return database.read_url


@pytest.fixture(scope="module")
def standby(database: DatabaseTarget, replica_url: str) -> Iterator[Engine]:
    """A plain engine on the replica (server mode, no routing): what the replica itself has replayed."""
    from lib.dbkit.engine import build_engine

    engine = build_engine(Settings.from_env({"DATABASE_URL": replica_url, "DB_POOLER_HOSTS": database.pooler_hosts}))
    yield engine
    engine.dispose()


@pytest.fixture
def replica_app(
    database: DatabaseTarget, replica_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., None]]:
    """The app in serverless mode with the read replica; call it with variables to change (DB_REPLICA_MAX_LAG=…) for
    a new execution environment."""
    from devtools.testing.lambda_runtime import reset_database_state
    from devtools.testing.replica import configure_replica

    def configure(**extra: str) -> None:
        configure_replica(
            monkeypatch,
            pooled_url=database.pooled_url,
            read_url=replica_url,
            pooler_hosts=database.pooler_hosts,
            **extra,
        )

    configure()
    yield configure
    reset_database_state()


@pytest.fixture
def replica(standin: StandinControl) -> StandinControl:
    """The stand-in's controls for the replica's endpoint alone (every endpoint reset before and after)."""
    return standin.on("replica")


@pytest.fixture
def no_password_in_logs(database: DatabaseTarget) -> Iterator[None]:
    """Every line the app or a library logs during the test is scanned for the database password."""
    from devtools.testing.logs import captured_logs
    from devtools.testing.secrets import assert_no_secret, library_logs

    with captured_logs() as app_logs, library_logs() as other_logs:
        yield
    assert_no_secret(database.password, *app_logs.lines, *other_logs)
