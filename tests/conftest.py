"""Test tiers are folders: each test gets the marker of its folder, so `-m unit` / `-m integration` select by tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lib.dbkit.settings import READ_URL_VARIABLES

TIERS = ("unit", "integration", "faults", "load")
# The suite runs without a read replica (.stack/env names one, and `make test` exports it): read-only units
# would otherwise go to the hot standby, whose replay a read right after a write may not have reached yet.
# tests/integration/test_replica.py configures the replica where it tests it.
REPLICA_VARIABLES = (*READ_URL_VARIABLES, "DB_REPLICA_MAX_LAG", "DB_REPLICA_CONNECT_BUDGET")


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
