"""Runs SQLAlchemy's and pg8000's own suites, unpatched, on each driver and route, one pytest process per run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devtools.conformance import cluster as clusters
from devtools.conformance import drivers, sources
from devtools.conformance.results import RunKey, RunResult, parse_junit
from devtools.paths import ROOT


@dataclass(frozen=True)
class Suite:
    """A suite: whose sdist it comes from, the paths pytest runs, the routes it runs on."""

    name: str
    package: str
    paths: tuple[str, ...]
    routes: tuple[str, ...]


# SQLAlchemy's suites run straight on Postgres (they need session state a transaction-mode pooler cannot keep);
# pg8000's runs on every route, so the pipelined start-up paths (TLS by SSLRequest and direct) run too.
SUITES: Final = {
    suite.name: suite
    for suite in (
        Suite("sqlalchemy-compliance", "SQLAlchemy", ("test/dialect/test_suite.py",), ("postgres",)),
        Suite(
            "sqlalchemy-postgresql",
            "SQLAlchemy",
            (
                "test/dialect/postgresql",
                "test/sql/test_query.py",
                "test/sql/test_resultset.py",
                "test/engine/test_transaction.py",
                "test/engine/test_execute.py",
            ),
            ("postgres",),
        ),
        Suite("pg8000-dbapi", "pg8000", ("test/dbapi",), ("postgres", "pgbouncer", "tls", "tls-direct")),
    )
}
# The name SQLAlchemy's harness knows the URL by (test.cfg [db]); the URL, with its password, stays off argv.
SQLA_DB_NAME: Final = "conformance"
RUN_TIMEOUT_S: Final = 2 * 60 * 60
_PG_ENV_PREFIXES: Final = ("PG", "DATABASE_URL", "DIRECT_DATABASE_URL", "DB_")


@dataclass(frozen=True)
class Selection:
    """A part of a suite (the representative subset in `make test`): node ids instead of its paths, or -k."""

    node_ids: tuple[str, ...] = ()
    keyword: str | None = None

    def arguments(self, suite: Suite) -> list[str]:
        chosen = list(self.node_ids or suite.paths)
        return [*chosen, "-k", self.keyword] if self.keyword else chosen


def plan(
    suites: Iterable[str] = SUITES, driver_names: Iterable[str] = drivers.DRIVERS, routes: Iterable[str] | None = None
) -> list[RunKey]:
    """The runs for these suites, drivers and routes; the stock driver is always included (it is the reference)."""
    wanted_drivers = [drivers.STOCK, *(name for name in driver_names if name != drivers.STOCK)]
    keys = []
    for name in suites:
        suite = SUITES[name]
        for route in suite.routes:
            if routes is not None and route not in routes:
                continue
            keys += [RunKey(name, route, driver) for driver in wanted_drivers]
    return keys


def _environment(extra: dict[str, str]) -> dict[str, str]:
    # Nothing of the caller's database settings may leak into a suite (pg8000 reads PGHOST and friends).
    environ = {name: value for name, value in os.environ.items() if not name.startswith(_PG_ENV_PREFIXES)}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ["PYTHONDONTWRITEBYTECODE"] = "1"
    # Only the plugins a suite asks for: this venv's others (schemathesis, hypothesis, anyio) stay out of its runs.
    environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return {**environ, **extra}


def _pytest(plugin: str, tree: Path, junit: Path) -> list[str]:
    # -s (no user site): SQLAlchemy's conftest then leaves sys.path alone and the installed release is tested,
    # the wheel applications run, not the sdist's lib/. The sdist's own pyproject.toml is the configuration, and
    # its folder the rootdir: pytest must not walk up to this repository's pyproject.toml (the cache is inside it).
    return [sys.executable, "-s", "-m", "pytest", "-c", str(tree / "pyproject.toml"), "--rootdir", str(tree),
            "-p", "no:cacheprovider", "-p", plugin, f"--junitxml={junit}"]  # fmt: skip


def _sqlalchemy_command(key: RunKey, cluster: clusters.Cluster, tree: Path, junit: Path) -> list[str]:
    clusters.fresh_sqla_database(cluster)
    config = tree / "test.cfg"
    config.write_text(f"[db]\n{SQLA_DB_NAME} = {cluster.sqla_url(drivers.DIALECTS[key.driver])}\n", encoding="utf-8")
    config.chmod(0o600)
    # --maxfail: SQLAlchemy's addopts stop at 250; every outcome is wanted.
    return [*_pytest("devtools.conformance.sqla_plugin", tree, junit), "--maxfail=1000000", "--db", SQLA_DB_NAME]


def _pg8000_environment(key: RunKey, cluster: clusters.Cluster) -> dict[str, str]:
    route = cluster.routes()[key.route]
    extra = {
        "CONFORMANCE_DRIVER": key.driver,
        "PGHOST": clusters.TLS_HOST,
        "PGPORT": str(route.port),
        "PGPASSWORD": cluster.pg8000_password,
        "CONFORMANCE_SSLNEGOTIATION": route.sslnegotiation,
    }
    if route.tls:
        extra["CONFORMANCE_CA_FILE"] = str(cluster.ca_file)
    if route.startup_options:
        extra["CONFORMANCE_STARTUP_OPTIONS"] = route.startup_options
    return extra


def execute(
    key: RunKey,
    cluster: clusters.Cluster,
    tree: Path,
    out: Path,
    selection: Selection | None = None,
) -> RunResult:
    """One pytest run of ``key``'s suite from its sdist ``tree``; junit XML and the log go to ``out``."""
    suite = SUITES[key.suite]
    out.mkdir(parents=True, exist_ok=True)
    junit = out / f"{key.name}.xml"
    log = out / f"{key.name}.log"
    junit.unlink(missing_ok=True)
    clusters.reset(cluster)
    if suite.package == "SQLAlchemy":
        command = _sqlalchemy_command(key, cluster, tree, junit)
        environ = _environment({})
    else:
        # pg8000's suite uses pytest-mock's `mocker` and pytest-benchmark's `benchmark` (run once, not timed).
        plugins = ["-p", "pytest_mock", "-p", "pytest_benchmark.plugin", "--benchmark-disable"]
        command = [*_pytest("devtools.conformance.pg8000_plugin", tree, junit), *plugins]
        environ = _environment(_pg8000_environment(key, cluster))
    command += ["-q", *(selection or Selection()).arguments(suite)]
    started = time.monotonic()
    try:
        with log.open("w", encoding="utf-8") as output:
            completed = subprocess.run(
                command, cwd=tree, env=environ, stdout=output, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S,
                check=False,
            )  # fmt: skip
        code: int | None = completed.returncode
    except subprocess.TimeoutExpired:
        code = None
    finally:
        (tree / "test.cfg").unlink(missing_ok=True)
    seconds = time.monotonic() - started
    _scrub([log, junit], [cluster.sqla_password, cluster.pg8000_password])
    if code is None:
        return RunResult(key, seconds=seconds, problem=f"timed out after {RUN_TIMEOUT_S} s (log: {log})")
    if not junit.exists() or code not in (0, 1):
        return RunResult(key, seconds=seconds, problem=f"pytest exited {code} (log: {log})")
    outcomes, messages = parse_junit(junit, per_backend=suite.package == "SQLAlchemy")
    return RunResult(key, outcomes, messages, seconds)


def _scrub(paths: list[Path], passwords: list[str]) -> None:
    """The cluster's passwords out of what is kept (CI uploads these files); the suites are not ours to trust."""
    for path in paths:
        if path.exists():
            text = path.read_text(encoding="utf-8", errors="replace")
            scrubbed = text
            for password in passwords:
                scrubbed = scrubbed.replace(password, "***")
            if scrubbed != text:
                path.write_text(scrubbed, encoding="utf-8")


def run_all(
    keys: list[RunKey],
    cluster: clusters.Cluster,
    trees: dict[str, Path],
    out: Path,
    selection: dict[str, Selection] | None = None,
    progress: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Every run in order (serially: the machine is shared), each reported to ``progress`` as it ends."""
    results = []
    for key in keys:
        suite = SUITES[key.suite]
        result = execute(key, cluster, trees[suite.package], out, (selection or {}).get(key.suite))
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def fetch_trees(versions: dict[str, str], suites: Iterable[str]) -> dict[str, Path]:
    """The extracted sdists these suites need, by package."""
    packages = {SUITES[name].package for name in suites}
    return {package: sources.fetch(package, versions[package]).root for package in sorted(packages)}


# The representative subset `make test` runs (devtools/tests/integration/test_conformance.py): a few tests of each
# cause the full run found (exception classes, default schema, isolation level, closed-connection semantics), every
# driver, every route.
SUBSET: Final = {
    "sqlalchemy-compliance": Selection(
        keyword="ExceptionTest or WeCanSetDefaultSchemaWEventsTest or IsolationLevelTest"
    ),
    "pg8000-dbapi": Selection(
        node_ids=(
            "test/dbapi/test_dbapi20.py::test_close",
            "test/dbapi/test_connection.py::test_closed_connection",
            "test/dbapi/test_connection.py::test_application_name",
            "test/dbapi/test_connection.py::test_failed_transaction_sql",
            "test/dbapi/auth/test_scram-sha-256_ssl.py::test_scram_sha_256_ssl_context",
        )
    ),
}
