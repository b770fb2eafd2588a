"""Fault tests: the app behind a fault-injecting proxy (or a restarted server), scanned for password leaks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lib import migrate
from tests.integration.conftest import DatabaseTarget, _needs_local_stack, database  # noqa: F401 - fixtures
from tests.support.figures import write_summary
from tests.support.logs import captured_logs
from tests.support.secrets import assert_no_secret, library_logs


@pytest.fixture(scope="session")
def schema(database: DatabaseTarget) -> None:  # noqa: F811 - the imported fixture
    migrate.migrate({"DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts})


@pytest.fixture(autouse=True)
def _no_password_in_logs(database: DatabaseTarget) -> Iterator[None]:  # noqa: F811 - the imported fixture
    with captured_logs() as app_logs, library_logs() as other_logs:
        yield
    assert_no_secret(database.password, *app_logs.lines, *other_logs)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    write_summary(terminalreporter, "fault scenarios")
