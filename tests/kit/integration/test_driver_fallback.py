"""After a pg8000 bump the kit keeps working: pipelined inside the tested range, stock dialect outside it.

The kit's own work on its own table (bump_workload.py); the sample's handlers after a bump are tested in
tests/app/integration/test_driver_fallback.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from devtools.testing.database import DatabaseTarget
from devtools.testing.subprocess_run import AS_DEPLOYED, run_module

WARNING = "pipelined pg8000 driver unavailable; using SQLAlchemy's stock pg8000 dialect"
EXPECTED = {"health": 200, "read_back": True, "session_count": 1, "leased": True}


def _run(release: str, database: DatabaseTarget) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = run_module("tests.kit.integration.bump_workload", database=database, pg8000=release, env=AS_DEPLOYED)
    summary: dict[str, Any] = lines[-1]["bump_run"]
    return summary, lines


@pytest.mark.usefixtures("schema", "kit_table")
def test_an_untested_pg8000_runs_every_kind_of_unit_on_the_stock_dialect_with_one_warning(
    database: DatabaseTarget,
) -> None:
    summary, lines = _run("1.30.5", database)
    assert (summary.pop("pg8000"), summary.pop("dialect")) == ("1.30.5", "DbapiDialect")
    assert summary == EXPECTED
    # One engine per process (execution environment): one warning and one metric, none per unit.
    warnings = [line for line in lines if line.get("message") == WARNING]
    assert len(warnings) == 1
    assert warnings[0]["problems"] == ["pg8000 1.30.5 is outside the tested range 1.31.4 to 1.31.6"]
    assert sum(1 for line in lines if "DbDriverFallback" in line) == 1


@pytest.mark.usefixtures("schema", "kit_table")
def test_a_release_inside_the_tested_range_keeps_the_pipelined_driver(database: DatabaseTarget) -> None:
    summary, lines = _run("1.31.4", database)
    assert (summary.pop("pg8000"), summary.pop("dialect")) == ("1.31.4", "PipelineDialect")
    assert summary == EXPECTED
    assert not [line for line in lines if line.get("message") == WARNING]
