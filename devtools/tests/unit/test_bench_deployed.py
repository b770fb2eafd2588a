"""devtools.bench.deployed's arithmetic on made-up samples and profiles (the real run is `make bench-coldstart`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devtools.bench.deployed import (
    API_BYTECODE,
    API_SOURCE,
    NAIVE_BYTECODE,
    NAIVE_SOURCE,
    DeployedColdStart,
    ImportEntry,
    Sample,
    floor,
    median_profile,
    parse_importtime,
    ratios_table,
    read_only_copy,
    top_imports_table,
)
from devtools.runtime_python import RuntimePython

LOG = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |     pg8000.core
{"level":"INFO","message":"a log line of the function between import lines"}
import time:       300 |        400 |   pg8000
import time:      1000 |       1400 | lib.dbkit.pg_dbapi
import time:       200 |       1600 | lib.dbkit.pg_pipeline
import time:      2000 |       2000 | fastapi
"""


def test_importtime_lines_become_entries_with_the_line_that_imported_them() -> None:
    entries = parse_importtime(LOG)
    assert [(e.module, e.self_ms, e.cumulative_ms, e.parent) for e in entries] == [
        ("pg8000.core", 0.1, 0.1, 1),
        ("pg8000", 0.3, 0.4, 2),
        ("lib.dbkit.pg_dbapi", 1.0, 1.4, None),
        ("lib.dbkit.pg_pipeline", 0.2, 1.6, None),
        ("fastapi", 2.0, 2.0, None),
    ]


def _entry(module: str, own: float, cumulative: float | None = None, parent: int | None = None) -> ImportEntry:
    return ImportEntry(module, own, own if cumulative is None else cumulative, parent)


def test_a_profile_is_the_median_of_each_line_over_the_runs_cycles_included() -> None:
    runs = [
        (_entry("a", 1.0), _entry("cycle", 5.0), _entry("cycle", 7.0)),
        (_entry("a", 3.0), _entry("cycle", 1.0), _entry("cycle", 9.0)),
        (_entry("a", 2.0), _entry("cycle", 3.0)),
    ]
    assert [(e.module, e.self_ms) for e in median_profile(runs)] == [("a", 2.0), ("cycle", 3.0), ("cycle", 7.0)]


def test_the_floor_splits_handlers_api_by_what_the_baseline_imports_and_counts_the_engine_subtree_once() -> None:
    api = (
        _entry("pg8000", 3.0, parent=1),
        _entry("lib.dbkit.pg_dbapi", 2.0, 5.0, parent=2),
        _entry("lib.dbkit.pg_pipeline", 1.0, 6.0, parent=3),
        _entry("lib.dbkit.engine", 0.5, 6.5),
        _entry("fastapi", 10.0),
        _entry("pydantic.v1.fields", 4.0),
    )
    naive = (_entry("pg8000", 2.0), _entry("fastapi", 12.0), _entry("mangum", 1.0))
    found = floor(api, naive)
    assert (found.naive_ms, found.api_ms, found.shared_ms, found.naive_only_ms) == (15.0, 20.5, 13.0, 1.0)
    assert dict(found.extra) == {"pydantic.v1": 4.0, "lib.dbkit": 3.5}
    # pg_dbapi sits under pg_pipeline: the engine's modules count pg_pipeline's whole import once.
    assert found.engine_ms == 6.0


def test_the_top_imports_show_each_module_once() -> None:
    table = top_imports_table((_entry("cycle", 1.0, 9.0), _entry("cycle", 0.5, 2.0), _entry("other", 1.0, 3.0)))
    assert table.count("| cycle |") == 1
    assert "| cycle | 9.0 | 1.0 |" in table


def _result(api: list[float], api_source: list[float], naive: list[float]) -> DeployedColdStart:
    samples = {
        API_BYTECODE: [Sample(ms, 40.0, 50.0, ms - 50) for ms in api],
        API_SOURCE: [Sample(ms, 80.0, 50.0, ms - 50) for ms in api_source],
        NAIVE_BYTECODE: [Sample(ms, 1.0, 50.0, ms - 50) for ms in naive],
        NAIVE_SOURCE: [Sample(ms * 3, 1.0, 50.0, ms * 3 - 50) for ms in naive],
    }
    python = RuntimePython(Path(sys.executable), "3.13.0", "python3.13", matches=True)
    return DeployedColdStart(
        "handlers.things", "things-01-read", python, "x86_64", len(api), samples, (), (), (), (), (1.0, 1.0), 1.0
    )


def test_ratios_are_medians_of_the_rounds_ratios() -> None:
    # Round by round: 0.3, 0.5, 0.25 with bytecode against without; against the baseline 1.0, 1.25, 1.5.
    result = _result(api=[300, 500, 600], api_source=[1000, 1000, 2400], naive=[300, 400, 400])
    assert result.bytecode_ratio.median == pytest.approx(0.3)
    assert result.naive_ratio.median == pytest.approx(1.25)
    table = ratios_table(result)
    assert "| handlers.things INIT, bytecode / no bytecode | 0.30x (" in table
    assert "≤ 0.5x: PASS" in table
    assert "≤ 0.9x: MISS" in table
    # The handler imports alone (INIT less the runtime's 50 ms start): 250/250, 450/350, 550/350.
    assert "both with bytecode | 1.29x (" in table


def test_a_target_met_reads_pass() -> None:
    assert "≤ 0.9x: PASS" in ratios_table(_result(api=[80], api_source=[400], naive=[100]))


def test_a_read_only_copy_that_a_cold_start_wrote_to_fails_the_measurement(tmp_path: Path) -> None:
    (tmp_path / "artifact" / "handlers").mkdir(parents=True)
    (tmp_path / "artifact" / "handlers" / "api.py").write_text("", encoding="utf-8")
    python = RuntimePython(Path(sys.executable), "3.13.0", "python3.13", matches=True)
    with (  # noqa: PT012 - the error comes from leaving the copy's block
        pytest.raises(RuntimeError, match=r"wrote to the read-only copy .*\['handlers/__pycache__'\]"),
        read_only_copy(
            tmp_path / "artifact", tmp_path / "task", python, handler="handlers.api.handle", bytecode=False
        ) as task,
    ):
        assert (task / "handlers" / "api.py").stat().st_mode & 0o222 == 0
        (task / "handlers").chmod(0o755)
        (task / "handlers" / "__pycache__").mkdir()
    # The entry module imports the handler by template.yaml's name for it.
    assert "from handlers.api import handle as handler" in (tmp_path / "task" / "bench_app.py").read_text()
