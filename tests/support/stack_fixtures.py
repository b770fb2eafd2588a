"""Fixtures the fault and load tiers share with integration (database target, schema) and the password scan.

The app's modules are imported inside the fixtures, not here: conftest files are imported while pytest's output
capture is off, and the Powertools logger binds whatever sys.stdout is when lib.dbkit.observability is first imported
(devtools.invoke's log recording relies on it being pytest's stream).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import DatabaseTarget, _needs_local_stack, database, schema, standin

__all__ = ["_needs_local_stack", "database", "no_password_in_logs", "schema", "standin"]


@pytest.fixture(autouse=True)
def no_password_in_logs(database: DatabaseTarget) -> Iterator[None]:
    """Every line the app or a library logs during the test is scanned for the database password."""
    from tests.support.logs import captured_logs
    from tests.support.secrets import assert_no_secret, library_logs

    with captured_logs() as app_logs, library_logs() as other_logs:
        yield
    assert_no_secret(database.password, *app_logs.lines, *other_logs)
