"""Test tiers are folders: each test gets the marker of its folder, so `-m unit` / `-m integration` select by tier."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "integration", "faults", "load")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
