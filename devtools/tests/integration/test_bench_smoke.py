"""The `make bench` machinery on the real pooler: what the proxy counts for a few requests, and the import baseline.

Counts only, no timings: a round trip is a count that cannot drift with machine load.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import stack
from devtools.bench import deployed, orm, report
from devtools.bench.app import BenchRequest, bench_app
from devtools.bench.coldstart import NAIVE_BASELINE, dependencies_of, handler_modules
from devtools.bench.environments import run_processes
from devtools.bench.negotiation import measure_new_connections
from devtools.bench.pooler_stats import PoolerConsole
from devtools.bench.profiles import (
    PingCounter,
    Profile,
    SeedProfile,
    TemplateProfile,
    quiet_app_logs,
    set_database_environment,
    template_environment,
)
from devtools.bench.report import TEMPLATE_REPLICA
from devtools.bench.roundtrips import (
    REPLICA_FIRST_REQUEST,
    REPLICA_READ,
    REPLICA_WRITE,
    Sample,
    measure,
    orm_scenarios,
    proxied_pooler,
    run_replica,
    write_row,
)
from devtools.function_config import FunctionConfig
from devtools.proxy import Proxy
from devtools.runtime_python import runtime_python
from devtools.testing.database import DatabaseTarget
from devtools.testing.secrets import assert_no_secret
from devtools.testing.urls import connect_address, with_database, with_port
from lib.dbkit.dsn import parse_database_url
from lib.dbkit.settings import DATABASE_VARIABLES

pytestmark = pytest.mark.integration
# The app's requests (app.toml [bench]), their functions and handlers from template.yaml.
APP = bench_app()


@dataclasses.dataclass(frozen=True)
class Bench:
    proxy: Proxy
    pings: PingCounter
    url: str
    pooler_hosts: str


@pytest.fixture
def bench(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    for name in DATABASE_VARIABLES:
        # setenv first so monkeypatch restores (or removes) every variable the profiles set.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    pooled = parse_database_url(database.pooler_url)
    with proxied_pooler(pooled.host, pooled.port) as (proxy, pings):
        yield Bench(proxy, pings, with_port(database.pooler_url, proxy.port), f"{pooled.host}:{proxy.port}")


def _template(bench: Bench, pool: str = "tiny") -> TemplateProfile:
    profile = TemplateProfile(pool, template_environment(bench.url, bench.pooler_hosts, pool=pool))
    profile.activate()
    return profile


def _status(profile: Profile, function: FunctionConfig, event: dict[str, Any]) -> int:
    return int(profile.invoke(function, event)["statusCode"])


def _warm(bench: Bench, profile: Profile, function: FunctionConfig, event: dict[str, Any]) -> Sample:
    assert 200 <= _status(profile, function, event) < 300
    response: list[int] = []
    sample = measure(bench.proxy, bench.pings, lambda: response.append(_status(profile, function, event)))
    assert 200 <= response[0] < 300
    return sample


def _health() -> BenchRequest:
    assert APP.health is not None, "app.toml [bench] names no health request"
    return APP.health


def _warm_health(bench: Bench, profile: Profile) -> Sample:
    health = _health()
    return _warm(bench, profile, health.function, health.event())


def test_template_health_is_one_round_trip_on_the_warm_connection(bench: Bench) -> None:
    profile = _template(bench)
    try:
        sample = _warm_health(bench, profile)
    finally:
        profile.close()
    # Its one statement is the dialect's ping (lib.dbkit.engine.ping), counted as such; no other ping runs.
    assert (sample.round_trips, sample.connections, sample.pings) == (1, 0, 1)


def test_template_warm_get_is_one_round_trip(bench: Bench, schema: None) -> None:
    # A single-statement unit: limits, statement and Sync in one flight, no BEGIN/COMMIT.
    profile = _template(bench)
    assert APP.read is not None, "app.toml [bench] names no read"
    try:
        sample = _warm(bench, profile, APP.read.function, APP.read_event(write_row(profile, APP)))
    finally:
        profile.close()
    assert (sample.round_trips, sample.connections, sample.pings) == (1, 0, 0)


def test_orm_rows_run_the_same_units_on_the_template_and_a_peer(bench: Bench, schema: None) -> None:
    template, seed = _template(bench), SeedProfile.on("seed", bench.url)
    counts: dict[str, list[int]] = {}
    try:
        for profile in (template, seed):
            item_ids = profile.orm(orm.OrmUnit("prepare", lambda s: orm.prepare(s, 3)))
            for scenario in orm_scenarios(item_ids):
                assert scenario.action(profile)  # warm
                action = functools.partial(scenario.action, profile)
                counts.setdefault(scenario.name, []).append(measure(bench.proxy, bench.pings, action).round_trips)
    finally:
        template.orm(orm.OrmUnit("drop", orm.drop))
        template.close()
        seed.close()
    # Template (pipelined, run_in_session) vs the guide's Session on stock pg8000 with pre-ping.
    assert counts == {
        "ORM get by key": [1, 8],
        "ORM select page": [1, 8],
        "ORM one-row insert": [1, 8],
        "ORM get-modify-flush update": [2, 11],
        "ORM get + delete": [2, 11],
    }


def test_nullpool_health_pays_a_connection_and_not_its_terminate(bench: Bench) -> None:
    # 5 to connect (TCP+TLS 1.3, SCRAM x2, startup) + 1 ping; the Terminate on close is sent without waiting.
    # With no added delay the startup message sometimes trails the server's TLS 1.3 session ticket and counts as a
    # flight of its own; 2 ms per direction keeps the count exact, as in the bench.
    bench.proxy.delay_ms = 2
    profile = _template(bench, "nullpool")
    try:
        sample = _warm_health(bench, profile)
    finally:
        profile.close()
    assert (sample.round_trips, sample.connections, sample.pings) == (6, 1, 1)


def test_seed_profile_pre_pings_every_checkout(bench: Bench) -> None:
    profile = SeedProfile.on("seed", bench.url)
    try:
        sample = _warm_health(bench, profile)
    finally:
        profile.close()
    # pre-ping at checkout (BEGIN, SELECT 1), then the health check's own ping (the dialect's, as lib.dbkit.engine.ping
    # sends it) in that transaction, then pg8000's three-round-trip ROLLBACK when the connection goes back.
    assert (sample.round_trips, sample.connections, sample.pings) == (6, 0, 2)


def _warm_with_console(bench: Bench, profile: Profile, console: PoolerConsole) -> Sample:
    health = _health()
    assert 200 <= _status(profile, health.function, health.event()) < 300
    statuses: list[int] = []

    def action() -> None:
        statuses.append(_status(profile, health.function, health.event()))

    sample = measure(bench.proxy, bench.pings, action, console)
    assert 200 <= statuses[0] < 300
    return sample


@pytest.mark.local_stack
def test_pooler_console_counts_one_transaction_and_its_hold_per_warm_health(
    bench: Bench, database: DatabaseTarget
) -> None:
    profile = _template(bench)
    try:
        with PoolerConsole(database.pooler_url) as console:
            sample = _warm_with_console(bench, profile, console)
    finally:
        profile.close()
    assert sample.transactions == 1
    assert sample.hold_ms is not None
    assert 0 < sample.hold_ms < sample.wall_ms


@pytest.mark.local_stack
def test_pooler_hold_grows_with_the_round_trips_inside_the_transaction(bench: Bench, database: DatabaseTarget) -> None:
    # The seed's pre-ping transaction spans several client round trips, each 2 x 10 ms here: PgBouncer holds the
    # server for all of them. psycopg in AUTOCOMMIT sends one flight: the hold does not see the added latency.
    bench.proxy.delay_ms = 10
    seed = SeedProfile.on("seed", bench.url)
    autocommit = SeedProfile.psycopg("psycopg autocommit", bench.url, pool="tiny", autocommit=True)
    try:
        with PoolerConsole(database.pooler_url) as console:
            seed_sample = _warm_with_console(bench, seed, console)
            autocommit_sample = _warm_with_console(bench, autocommit, console)
    finally:
        seed.close()
        autocommit.close()
    assert seed_sample.hold_ms is not None
    assert autocommit_sample.hold_ms is not None
    assert seed_sample.hold_ms >= 2 * 10 * (seed_sample.round_trips - 2)
    assert autocommit_sample.hold_ms < 10
    assert (autocommit_sample.round_trips, autocommit_sample.transactions) == (1, 1)


def test_psycopg_pool_of_one_runs_the_app_with_begin_statement_commit(bench: Bench, schema: None) -> None:
    profile = SeedProfile.psycopg("psycopg pool1", bench.url, pool="tiny")
    assert APP.read is not None, "app.toml [bench] names no read"
    try:
        profile.activate()
        sample = _warm(bench, profile, APP.read.function, APP.read_event(write_row(profile, APP)))
        health = _warm_health(bench, profile)
    finally:
        profile.close()
    # The app's unit of work on the psycopg engine: libpq sends BEGIN, then the SELECT, then COMMIT; no pre-ping,
    # no new connection.
    assert (sample.round_trips, sample.connections, sample.pings) == (3, 0, 0)
    # The health check is the dialect's ping alone, which psycopg's dialect sends in autocommit: one round trip.
    assert (health.round_trips, health.connections, health.pings) == (1, 0, 1)


@pytest.mark.local_stack
def test_environment_processes_account_for_every_request_issued(database: DatabaseTarget, schema: None) -> None:
    pooler = parse_database_url(database.pooler_url)
    environ = template_environment(database.pooler_url, f"{pooler.host}:{pooler.port}", pool="tiny")
    profile = TemplateProfile("template", environ)
    with quiet_app_logs():
        profile.activate()
        try:
            request = APP.repeated_request(profile.invoke)
        finally:
            profile.close()
            set_database_environment({})
    result = run_processes(environ, request, 2, database.pooler_url, requests=5)
    assert (result.issued, result.completed, result.failed, result.not_started) == (10, 10, 0, 0)
    assert result.error_kinds == {}
    assert result.pooler is not None
    # A single-statement request holds a server for well under a millisecond: the sampler may never catch one busy.
    assert result.pooler.peak_busy_servers <= 2
    assert result.pooler.transactions >= 10


def test_naive_import_baseline_names_the_stack_a_typical_app_imports() -> None:
    assert set(NAIVE_BASELINE) == {
        "fastapi",
        "mangum",
        "sqlalchemy",
        "sqlalchemy.orm",
        "pg8000",
        "aws_lambda_powertools",
    }


def test_the_deployed_cold_start_runs_the_built_artifact_read_only_under_the_runtime_client(
    database: DatabaseTarget, schema: None, tmp_path: Path
) -> None:
    probe = APP.probe
    assert probe is not None, "app.toml [bench] names no read and no health request"
    config = probe.request.function
    python = runtime_python(config.runtime)
    if not python.matches:
        pytest.skip(f"the deployed cold start runs on {config.runtime}: {python.describe()}")
    built = tmp_path / "build"
    size = deployed.build(built, config.logical_id, config.runtime.removeprefix("python"), bytecode=True)
    sources = [path for path in built.rglob("*.py") if "__pycache__" not in path.parts]
    assert size.pyc_files == len(sources) > 0
    environ = {"DATABASE_URL": database.pooled_url, "DB_POOLER_HOSTS": database.pooler_hosts}
    event = probe.request.event()
    profile = {"PYTHONPROFILEIMPORTTIME": "1"}
    # Leaving the block checks that nothing was written to the read-only copy.
    with deployed.read_only_copy(built, tmp_path / "task", python, handler=config.handler, bytecode=True) as task:
        api, sample = deployed.cold_start(
            deployed.API_BYTECODE, task, config, python, event, profile, environ=environ, expected_status=probe.status
        )
        naive, _ = deployed.cold_start(deployed.NAIVE_BYTECODE, task, config, python, event, environ=environ)
    assert (api.status_code, naive.status_code) == (probe.status, 200)
    assert api.cold
    # INIT is the runtime's start and then the handler module's import, each clocked on its own.
    assert 0 < sample.startup_ms < sample.init_ms
    assert 0 < sample.import_ms < sample.init_ms
    init, marker, _ = api.logs.partition(deployed.INIT_MARKER)
    assert marker
    imported = {entry.module for entry in deployed.parse_importtime(init)}
    assert {config.handler_module, "lib.dbkit.engine", "awslambdaric.bootstrap"} <= imported
    assert_no_secret(database.password, api.logs, naive.logs)


@pytest.mark.parametrize("handler", handler_modules())
def test_import_baseline_is_the_third_party_modules_our_code_imports(handler: str) -> None:
    found = dependencies_of(handler)
    assert "sqlalchemy" in found
    assert "aws_lambda_powertools.metrics" in found
    assert not [name for name in found if name.split(".")[0] in {"lib", "handlers", "json", "os"}]
    # Imported lazily by the kit (only for a secret-store URL), so not part of any handler's import cost.
    assert "boto3" not in found


@pytest.mark.neon_standin
def test_direct_tls_saves_one_round_trip_per_new_connection(database: DatabaseTarget) -> None:
    host, port = connect_address(database.pooled_url)
    with Proxy(host, port) as proxy:
        found = measure_new_connections(proxy, parse_database_url(database.pooled_url), runs=3)
    trips = {row.negotiation: row.round_trips for row in found}
    # TCP is not a flight of its own; SSLRequest, ClientHello, Finished + startup, two SCRAM messages.
    assert trips == {"postgres": (5, 5), "direct": (4, 4)}


@pytest.mark.local_stack
def test_replica_rows_are_one_round_trip_warm_six_first_and_served_by_the_replica(
    bench: Bench, database: DatabaseTarget, schema: None
) -> None:
    # Both of PgBouncer's databases through the bench's proxy: neondb and the hot standby's neondb_replica.
    read_url = with_database(bench.url, stack.REPLICA_DATABASE)
    environ = template_environment(bench.url, bench.pooler_hosts, pool="tiny", read_url=read_url, max_lag="5")
    profile = TemplateProfile(TEMPLATE_REPLICA, environ)
    with PoolerConsole(with_database(database.pooler_url, stack.REPLICA_DATABASE)) as console:
        # run_replica fails a read row the replica's pooled database did not count (served by the primary).
        found = run_replica(bench.proxy, bench.pings, [profile], 1, console)
    rows = {role: [row for row in found if row.role == role] for role in (REPLICA_READ, REPLICA_WRITE)}
    # The app's read by id, its list and the read with Read-After (app.toml [bench]).
    assert len(rows[REPLICA_READ]) == 3
    assert [(row.round_trips, row.transactions) for row in rows[REPLICA_READ]] == [((1, 1), (1, 1))] * 3
    (write,) = rows[REPLICA_WRITE]
    assert (write.round_trips, write.transactions) == ((1, 1), (0, 0))
    (first,) = [row for row in found if row.role == REPLICA_FIRST_REQUEST]
    assert (first.round_trips, first.connections, first.transactions) == ((6, 6), (1, 1), (1, 1))
    assert [target.met for target in report.targets([], [], [], [], None, found)] == [True, True]
