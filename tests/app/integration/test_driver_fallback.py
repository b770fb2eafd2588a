"""After a pg8000 bump the notes handlers keep working: pipelined inside the tested range, stock dialect outside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from devtools.paths import ROOT
from devtools.testing.database import DatabaseTarget

# Installed by devtools/bootstrap.sh (OTHER_PG8000).
RELEASES = ROOT / ".venv" / "pg8000"
WARNING = "pipelined pg8000 driver unavailable; using SQLAlchemy's stock pg8000 dialect"


def _run_handlers(release: str, database: DatabaseTarget) -> list[dict[str, Any]]:
    target = RELEASES / release
    assert (target / "pg8000").is_dir(), f"run `make venv`: {target} is missing"
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)]),
        "DATABASE_URL": database.pooled_url,
        "DB_POOLER_HOSTS": database.pooler_hosts,
        "DB_MODE": "serverless",
    }
    for name in ("DB_DRIVER", "DATABASE_SECRET_ARN", "DATABASE_URL_PARAMETER"):
        environ.pop(name, None)
    completed = subprocess.run(
        [sys.executable, "-m", "tests.app.integration.run_handlers"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert database.password not in completed.stdout + completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


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
