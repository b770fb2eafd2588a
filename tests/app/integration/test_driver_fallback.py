"""After a pg8000 bump the notes handlers keep working: pipelined inside the tested range, stock dialect outside."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.testing.database import DatabaseTarget
from devtools.testing.subprocess_run import AS_DEPLOYED, run_module

WARNING = "pipelined pg8000 driver unavailable; using SQLAlchemy's stock pg8000 dialect"


def _run_handlers(release: str, database: DatabaseTarget) -> list[dict[str, Any]]:
    return run_module("tests.app.integration.run_handlers", database=database, pg8000=release, env=AS_DEPLOYED)


def _summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = lines[-1]["handler_run"]
    return summary


EXPECTED_STATUSES = {"health": 200, "create": 201, "get": 200, "list": 200, "delete": 204, "gone": 404}


@pytest.mark.usefixtures("schema")
def test_an_untested_pg8000_runs_every_handler_on_the_stock_dialect_with_one_warning(database: DatabaseTarget) -> None:
    lines = _run_handlers("1.30.5", database)
    summary = _summary(lines)
    assert summary["pg8000"] == "1.30.5"
    assert summary["dialect"] == "DbapiDialect"
    assert summary["statuses"] == EXPECTED_STATUSES
    assert summary["purge_skipped"] is False
    # One engine per process (execution environment): one warning and one metric, none per request.
    warnings = [line for line in lines if line.get("message") == WARNING]
    assert len(warnings) == 1
    assert warnings[0]["problems"] == ["pg8000 1.30.5 is outside the tested range 1.31.4 to 1.31.6"]
    assert sum(1 for line in lines if "DbDriverFallback" in line) == 1


@pytest.mark.usefixtures("schema")
def test_a_release_inside_the_tested_range_keeps_the_pipelined_driver(database: DatabaseTarget) -> None:
    lines = _run_handlers("1.31.4", database)
    summary = _summary(lines)
    assert summary["pg8000"] == "1.31.4"
    assert summary["dialect"] == "PipelineDialect"
    assert summary["statuses"] == EXPECTED_STATUSES
    assert not [line for line in lines if line.get("message") == WARNING]
