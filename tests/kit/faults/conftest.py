"""Fault tests: the app behind a fault-injecting proxy (or a restarted server), scanned for password leaks.

Unlike the kit's unit and integration tiers, this one drives the app's API (handlers.api with events/api-*.json):
what it proves, that no acknowledged write is lost or stored twice, needs real writes with Idempotency-Keys.
"""

from __future__ import annotations

import pytest

from devtools.testing.figures import write_summary
from tests.kit.sample_api import require_notes_api


@pytest.fixture(autouse=True)
def _every_log_line_scanned(no_password_in_logs: None) -> None:
    """Every test of this tier has its log lines scanned for the database password (devtools.pytest_plugin)."""


@pytest.fixture(autouse=True, scope="session")
def _the_notes_api() -> None:
    """This tier's requests are the sample's: without its events every test fails with the reason, not a KeyError."""
    require_notes_api("faults")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    write_summary(terminalreporter)
