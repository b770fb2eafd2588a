"""make conformance's pure parts: junit outcomes, the comparison with stock, the allow-list, the gate proposal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.conformance import gate, harness, results, sources, watch
from devtools.conformance.drivers import KIT_PIPELINE, KIT_STOCK, STOCK
from devtools.conformance.results import Allowance, RunKey, RunResult

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
  <testcase classname="test.dialect.test_suite.ExceptionTest_postgresql+pg8000_pipeline_15_18"
            name="test_integrity_error">
    <failure message="AssertionError: DatabaseError is not IntegrityError&#10;second line">trace</failure>
  </testcase>
  <testcase classname="test.dialect.test_suite.ArgSignatureTest" name="test_all[Compiled]"/>
  <testcase classname="test.dialect.test_suite.CTETest_postgresql+pg8000_15_18" name="test_skip">
    <skipped type="pytest.skip" message="not supported"/></testcase>
  <testcase classname="test.dialect.test_suite.TableTest_postgresql+pg8000_15_18" name="test_setup">
    <error message="failed on setup with &quot;NotImplementedError&quot;">trace</error></testcase>
  <testcase classname="test.dialect.test_suite.TableTest_postgresql+pg8000_15_18" name="test_teardown">
    <failure message="boom">trace</failure><error message="failed on teardown">trace</error></testcase>
</testsuite></testsuites>
"""


def _result(driver: str, outcomes: dict[str, str], *, suite: str = "pg8000-dbapi", route: str = "tls") -> RunResult:
    return RunResult(RunKey(suite, route, driver), outcomes, {test: f"{test} broke" for test in outcomes})


def test_junit_outcomes_per_test_without_sqlalchemys_per_backend_class_suffix(tmp_path: Path) -> None:
    report = tmp_path / "run.xml"
    report.write_text(JUNIT, encoding="utf-8")
    outcomes, messages = results.parse_junit(report, per_backend=True)
    assert outcomes == {
        "test.dialect.test_suite.ExceptionTest::test_integrity_error": "failed",
        "test.dialect.test_suite.ArgSignatureTest::test_all[Compiled]": "passed",
        "test.dialect.test_suite.CTETest::test_skip": "skipped",
        "test.dialect.test_suite.TableTest::test_setup": "error",
        # A failure in the test outranks its teardown error.
        "test.dialect.test_suite.TableTest::test_teardown": "failed",
    }
    assert messages["test.dialect.test_suite.ExceptionTest::test_integrity_error"] == (
        "AssertionError: DatabaseError is not IntegrityError"
    )
    assert "test.dialect.test_suite.CTETest::test_skip" not in messages


def test_the_same_test_has_the_same_id_whatever_the_dialects_driver_name() -> None:
    ids = {
        results.case_id(f"test.dialect.test_suite.ExceptionTest_postgresql+{driver}_15_18", "t", per_backend=True)
        for driver in ("pg8000", "pg8000_dbapi", "pg8000_pipeline")
    }
    assert ids == {"test.dialect.test_suite.ExceptionTest::t"}
    assert results.case_id("test.dbapi.test_dbapi20", "test_close") == "test.dbapi.test_dbapi20::test_close"


def test_a_kit_driver_differs_where_stock_passes_and_it_does_not() -> None:
    stock = _result(STOCK, {"a": "passed", "b": "passed", "c": "failed", "d": "passed", "e": "passed"})
    kit = _result(KIT_PIPELINE, {"a": "passed", "b": "failed", "c": "failed", "d": "skipped"})
    differences = results.compare([stock, kit], [])
    assert [(d.test, d.outcome, d.reason) for d in differences] == [
        ("b", "failed", None),
        ("d", "skipped", None),
        ("e", "missing", None),
    ]
    assert differences[0].message == "b broke"
    assert results.difference_lines(differences)[0] == "pg8000-dbapi.tls.kit-pipeline  b  failed: b broke"
    assert differences[0].key == RunKey("pg8000-dbapi", "tls", KIT_PIPELINE)


def test_differences_are_per_route_and_the_allow_list_gives_the_reason() -> None:
    runs = [
        _result(STOCK, {"t": "passed"}, route="pgbouncer"),
        _result(KIT_STOCK, {"t": "failed"}, route="pgbouncer"),
        _result(STOCK, {"t": "failed"}, route="tls"),
        _result(KIT_STOCK, {"t": "failed"}, route="tls"),
    ]
    allow = Allowance("pg8000-dbapi", "kit-*", "pgbouncer", "t", "PgBouncer cannot do this")
    (difference,) = results.compare(runs, [allow])
    assert difference.key.route == "pgbouncer"
    assert difference.reason == "PgBouncer cannot do this"
    assert results.difference_lines([difference]) == ["t on 1 run(s), allowed: PgBouncer cannot do this"]
    other = Allowance("pg8000-dbapi", "kit-*", "tls", "t", "not this route")
    assert results.unused_allowances([allow, other], [difference]) == [other]


def test_a_run_that_did_not_run_or_has_no_stock_reference_is_a_problem_not_a_pass() -> None:
    broken = RunResult(RunKey("pg8000-dbapi", "tls", KIT_PIPELINE), problem="pytest exited 3")
    orphan = _result(KIT_STOCK, {"t": "passed"}, route="postgres")
    found = results.problems([_result(STOCK, {"t": "passed"}), broken, orphan])
    assert found == [
        "pg8000-dbapi.tls.kit-pipeline: pytest exited 3",
        "pg8000-dbapi.postgres.kit-stock: no stock run of pg8000-dbapi on postgres to compare with",
    ]


def test_every_allow_list_entry_must_give_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "allowlist.toml"
    path.write_text('[[allow]]\nsuite = "s"\ndriver = "*"\nroute = "*"\ntest = "t"\nreason = ""\n', encoding="utf-8")
    with pytest.raises(ValueError, match="entry 1 lacks reason"):
        results.load_allowlist(path)
    assert all(entry.reason for entry in results.load_allowlist())


def test_the_table_counts_each_outcome_and_renders_for_docs() -> None:
    rows = results.table([_result(STOCK, {"a": "passed", "b": "skipped", "c": "error"})])
    assert rows[0] | {"seconds": 0} == {
        "suite": "pg8000-dbapi",
        "route": "tls",
        "driver": STOCK,
        "passed": 1,
        "failed": 0,
        "error": 1,
        "skipped": 1,
        "total": 3,
        "seconds": 0,
        "problem": None,
    }
    assert "| pg8000-dbapi | tls | stock | 1 | 0 | 1 | 1 |" in results.render_markdown(rows)


def test_the_plan_always_includes_the_stock_reference_on_every_route() -> None:
    keys = harness.plan(["pg8000-dbapi"], [KIT_PIPELINE], ["pgbouncer", "tls-direct"])
    assert [(key.route, key.driver) for key in keys] == [
        ("pgbouncer", STOCK),
        ("pgbouncer", KIT_PIPELINE),
        ("tls-direct", STOCK),
        ("tls-direct", KIT_PIPELINE),
    ]
    full = harness.plan()
    assert len(full) == 3 * (1 + 1 + 4)
    assert harness.Selection(keyword="X").arguments(harness.SUITES["sqlalchemy-compliance"]) == [
        "test/dialect/test_suite.py",
        "-k",
        "X",
    ]


def test_the_versions_come_from_requirements_txt(tmp_path: Path) -> None:
    pins = sources.pinned_versions()
    assert {"sqlalchemy", "pg8000", "scramp", "aws-lambda-powertools"} <= set(pins)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# runtime\nSQLAlchemy==2.1.9\npg8000 == 1.31.6  # driver\nrich>=13\nzope.interface==7.2\n")
    assert sources.pinned_versions(requirements) == {"sqlalchemy": "2.1.9", "pg8000": "1.31.6", "zope-interface": "7.2"}


def _evidence(release: str, *, verdict: str = "pass", complete: bool = True) -> dict[str, Any]:
    return {"versions": {"pg8000": release}, "verdict": verdict, "complete": complete}


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        (_evidence("1.32.0"), ((1, 31, 4), (1, 32, 0))),
        (_evidence("1.32.0", verdict="fail"), None),
        (_evidence("1.32.0", complete=False), None),
        (_evidence("1.32.0rc1"), None),
        (_evidence("1.31.5"), None),
        (_evidence("1.30.5"), None),
    ],
)
def test_the_gate_is_widened_only_by_a_complete_passing_run_of_a_newer_release(
    evidence: dict[str, Any], expected: object
) -> None:
    proposed, why = gate.proposal(evidence, ((1, 31, 4), (1, 31, 6)))
    assert proposed == expected
    assert why


def test_the_gate_is_written_where_the_engine_reads_it(tmp_path: Path) -> None:
    copy = tmp_path / "pg8000_internals.py"
    copy.write_text(gate.INTERNALS.read_text(encoding="utf-8"), encoding="utf-8")
    from lib.dbkit import pg8000_internals

    assert gate.current(copy) == pg8000_internals.TESTED_RANGE
    gate.write(((1, 31, 4), (1, 32, 0)), copy)
    assert gate.current(copy) == ((1, 31, 4), (1, 32, 0))
    assert "TESTED_RANGE: Final = ((1, 31, 4), (1, 32, 0))\n" in copy.read_text(encoding="utf-8")


def test_the_watch_report_fails_on_any_failed_step_and_proposes_only_after_everything_passed() -> None:
    pins = sources.pinned_versions()
    evidence = {
        "versions": {"pg8000": "1.32.0", "SQLAlchemy": pins["sqlalchemy"]},
        "verdict": "fail",
        "unexplained": 1,
        "differences": [
            {
                "key": {"suite": "pg8000-dbapi", "route": "tls", "driver": KIT_PIPELINE},
                "test": "test.dbapi.test_dbapi20::test_close",
                "outcome": "failed",
                "message": "DID NOT RAISE",
                "reason": None,
            }
        ],
        "problems": [],
    }
    body, verdict, propose = watch.compose({"conformance": "failure", "tiers": "success"}, evidence, pins, None)
    assert (verdict, propose) == ("fail", False)
    assert "`pg8000-dbapi.tls.kit-pipeline` `test.dbapi.test_dbapi20::test_close` failed: DID NOT RAISE" in body
    assert "| pg8000 | 1.31.6 | 1.32.0 (newer) |" in body
    widened = ((1, 31, 4), (1, 32, 0))
    passing = evidence | {"verdict": "pass", "unexplained": 0, "differences": []}
    body, verdict, propose = watch.compose({"conformance": "success", "tiers": "success"}, passing, pins, widened)
    assert (verdict, propose) == ("pass", True)
    assert "TESTED_RANGE: Final = ((1, 31, 4), (1, 32, 0))" in body
    _body, verdict, propose = watch.compose({"conformance": "success", "tiers": "failure"}, passing, pins, widened)
    assert (verdict, propose) == ("fail", False)
    _body, verdict, _propose = watch.compose({"conformance": "success"}, None, pins, None)
    assert verdict == "fail"
