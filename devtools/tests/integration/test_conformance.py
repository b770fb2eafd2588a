"""make conformance's representative subset, in `make test`: the same harness, a few tests of each suite.

SQLAlchemy's compliance tests and pg8000's own tests (from the pinned releases' sdists, cached in .cache/) run on a
throwaway cluster on SQLAlchemy's/pg8000's stock driver and on both kit drivers; pg8000's on every route (Postgres,
PgBouncer, TLS by SSLRequest, direct TLS). Any test that passes on stock and not on a kit driver fails this, unless
devtools/conformance/allowlist.toml gives its reason. The full suites run in `make conformance` and its CI workflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import stack
from devtools.conformance import cluster as clusters
from devtools.conformance import drivers, harness, results, sources

# Not .stack/conformance: a `make conformance` in the same checkout keeps its own cluster.
HOME = stack.STACK_DIR / "conformance-subset"


@pytest.fixture(scope="module")
def conformance() -> Iterator[tuple[clusters.Cluster, dict[str, Path]]]:
    # The installed releases: the pins after `make venv`, the newest ones in the dependency watch.
    versions = sources.versions_under_test(allow_unpinned=True)
    trees = harness.fetch_trees(versions, harness.SUBSET)
    with clusters.running(HOME) as cluster:
        yield cluster, trees


def _run(suite: str, conformance: tuple[clusters.Cluster, dict[str, Path]], out: Path) -> list[results.RunResult]:
    cluster, trees = conformance
    keys = harness.plan([suite])
    outcome = harness.run_all(keys, cluster, trees, out, harness.SUBSET)
    assert results.problems(outcome) == []
    differences = results.compare(outcome, results.load_allowlist())
    unexplained = [difference for difference in differences if difference.reason is None]
    assert results.difference_lines(unexplained) == []
    # What the suites print and report is kept (CI uploads it): the cluster's passwords are not in it.
    kept = "".join(path.read_text(encoding="utf-8", errors="replace") for path in out.iterdir())
    assert cluster.sqla_password not in kept
    assert cluster.pg8000_password not in kept
    return outcome


def _passed_on_every_driver(outcome: list[results.RunResult], test: str) -> None:
    for result in outcome:
        assert result.outcomes.get(test) == results.PASSED, (result.key.name, test, result.messages.get(test))


def test_sqlalchemy_compliance_subset_passes_on_the_kit_dialects_as_on_sqlalchemys_pg8000(
    conformance: tuple[clusters.Cluster, dict[str, Path]], tmp_path: Path
) -> None:
    outcome = _run("sqlalchemy-compliance", conformance, tmp_path)
    assert {result.key.driver for result in outcome} == set(drivers.DRIVERS)
    # The causes of issue 23, each seen to pass (not skipped) on every dialect.
    _passed_on_every_driver(outcome, "test.dialect.test_suite.ExceptionTest::test_integrity_error")
    _passed_on_every_driver(
        outcome, "test.dialect.test_suite.WeCanSetDefaultSchemaWEventsTest::test_wont_work_wo_insert"
    )
    _passed_on_every_driver(outcome, "test.dialect.test_suite.IsolationLevelTest::test_default_isolation_level")


def test_pg8000_dbapi_subset_passes_on_the_kit_drivers_on_every_route(
    conformance: tuple[clusters.Cluster, dict[str, Path]], tmp_path: Path
) -> None:
    outcome = _run("pg8000-dbapi", conformance, tmp_path)
    assert {result.key.route for result in outcome} == set(harness.SUITES["pg8000-dbapi"].routes)
    _passed_on_every_driver(outcome, "test.dbapi.test_dbapi20::test_close")
    _passed_on_every_driver(outcome, "test.dbapi.test_connection::test_application_name")
