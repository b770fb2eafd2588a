"""Fault tests: the app behind a fault-injecting proxy (or a restarted server), scanned for password leaks."""

from __future__ import annotations

import pytest

from tests.support.figures import write_summary
from tests.support.stack_fixtures import _needs_local_stack, database, no_password_in_logs, schema, standin

__all__ = ["_needs_local_stack", "database", "no_password_in_logs", "schema", "standin"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    write_summary(terminalreporter)
