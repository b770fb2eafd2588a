"""`python -m devtools.bench`: run every measurement, print the tables, write them to bench/results.md."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from devtools import stack
from devtools.bench import deployed as deployed_coldstart
from devtools.bench import report
from devtools.bench.app import bench_app
from devtools.bench.coldstart import DEFAULT_RUNS, ImportTiming, measure_imports
from devtools.bench.deployed import DeployedColdStart, measure_deployed
from devtools.bench.environments import PROCESS_COUNTS, REQUESTS_PER_PROCESS
from devtools.bench.negotiation import COUNT_DELAY_MS, NewConnection, measure_new_connections
from devtools.bench.negotiation import table as negotiation_table
from devtools.bench.pooler_stats import PoolerConsole
from devtools.bench.profiles import (
    Profile,
    SeedProfile,
    TemplateProfile,
    quiet_app_logs,
    template_environment,
)
from devtools.bench.roundtrips import DELAYS_MS, Row, Steps, proxied_pooler, run_all, run_replica
from devtools.bench.scale import (
    ENVIRONMENT_COUNTS,
    PHASE_LIMIT_S,
    REQUESTS_PER_ENVIRONMENT,
    LoadResult,
    run_scale,
)
from devtools.paths import ROOT
from devtools.proxy import Proxy
from lib.dbkit.dsn import parse_database_url

RESULTS = ROOT / "bench" / "results.md"
PACKAGES = ("pg8000", "psycopg", "SQLAlchemy", "fastapi", "mangum", "aws-lambda-powertools", "awslambdaric")


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def bench_profiles(url: str, pooler_hosts: str) -> list[Profile]:
    """The peers side by side: the seed, psycopg 3 three ways, the template on the stock and the pipelined driver."""
    return [
        SeedProfile.on("seed", url),
        SeedProfile.psycopg("psycopg null", url, pool="null"),
        SeedProfile.psycopg("psycopg pool1", url, pool="tiny"),
        SeedProfile.psycopg("psycopg autocommit", url, pool="tiny", autocommit=True),
        TemplateProfile("template stock", template_environment(url, pooler_hosts, pool="tiny", driver="stock")),
        TemplateProfile(report.TEMPLATE, template_environment(url, pooler_hosts, pool="tiny")),
    ]


def _round_trips(runs: int) -> tuple[list[Row], list[Steps]]:
    state = stack.up()
    with proxied_pooler("localhost", state.pgbouncer_port) as (proxy, pings):
        # The host name stays localhost, so TLS still verifies it; only the port moves to the proxy, which the
        # pooler validator is told about like any pooler host.
        url = state.url(proxy.port)
        hosts = f"localhost:{proxy.port}"
        profiles = bench_profiles(url, hosts)
        # The admin console on PgBouncer's own port: its queries are not counted by the proxy.
        with PoolerConsole(state.url(state.pgbouncer_port)) as console:
            return run_all(proxy, pings, profiles, runs, {}, console)


# The replica profiles' lag bound: the guard statement rides in every read's flight, as with DB_REPLICA_MAX_LAG set.
REPLICA_MAX_LAG = "5"


def replica_profiles(url: str, read_url: str, pooler_hosts: str) -> list[Profile]:
    """The template on both drivers with a read replica (DATABASE_READ_URL) and a lag bound."""
    return [
        TemplateProfile(
            f"{name} + replica",
            template_environment(
                url, pooler_hosts, pool="tiny", driver=driver, read_url=read_url, max_lag=REPLICA_MAX_LAG
            ),
        )
        for name, driver in (("template stock", "stock"), (report.TEMPLATE, "pipeline"))
    ]


def _replica_round_trips(runs: int) -> list[Row]:
    state = stack.up()
    with proxied_pooler("localhost", state.pgbouncer_port) as (proxy, pings):
        # Both databases through the one proxy (PgBouncer's neondb and neondb_replica, the hot standby): its
        # counts are the request's round trips whichever server they went to; the replica's pooled database on
        # the admin console says which served it.
        url = state.url(proxy.port)
        read_url = state.url(proxy.port, stack.REPLICA_DATABASE)
        profiles = replica_profiles(url, read_url, f"localhost:{proxy.port}")
        with PoolerConsole(state.url(state.pgbouncer_port, stack.REPLICA_DATABASE)) as console:
            return run_replica(proxy, pings, profiles, runs, console)


def _new_connections(runs: int) -> list[NewConnection]:
    state = stack.up()
    # In front of the Neon stand-in (PgBouncer 1.18 has no direct TLS); the URL keeps its host name for SNI.
    with Proxy(stack.LOOPBACK, state.standin_port) as proxy:
        return measure_new_connections(proxy, parse_database_url(state.database_url), runs)


def _scale(counts: tuple[int, ...], processes: tuple[int, ...]) -> list[LoadResult]:
    with quiet_app_logs() as logs:
        return run_scale(logs, counts, process_counts=processes)


def _round_trip_tables(rows: list[Row]) -> list[str]:
    """The rows side by side, then in detail."""
    return [report.side_by_side_table(rows), "", "In detail:", "", report.round_trip_table(rows)]


def replica_section(rows: list[Row], runs: int) -> str:
    """The read replica's rows: what the replica changes for a request, counted like the rows above."""
    return "\n".join(
        [
            "The template with a read replica (`DATABASE_READ_URL`: the local stack's hot standby behind PgBouncer's "
            f"`{stack.REPLICA_DATABASE}` database; `DB_REPLICA_MAX_LAG={REPLICA_MAX_LAG}`, so the lag guard rides "
            "in every read's first flight), on the stock and the pipelined driver. Both databases are reached "
            "through the one counting proxy, so round trips are the request's whichever server they went to; xacts "
            "and hold are PgBouncer's figures for the replica's database alone, which says who served the row: 1 "
            "per read (2 for the stock driver's first request: SQLAlchemy's first-connect queries; the bench fails "
            "a read row served elsewhere), 0 for the write, which the primary serves "
            "(its answer carries the commit LSN as `Read-After`: in the commit's flight on the pipelined driver, "
            f"one more query on stock). Medians of {runs} runs per column, as above.",
            "",
            *_round_trip_tables(rows),
        ]
    )


def _document(
    rows: list[Row],
    steps: list[Steps],
    new_connections: list[NewConnection],
    imports: list[ImportTiming],
    scale: list[LoadResult],
    deployed: DeployedColdStart | str | None,
    replica_rows: list[Row],
    *,
    runs: int,
    import_runs: int,
    seconds: float,
) -> str:
    found = report.targets(
        rows, steps, imports, scale, deployed if isinstance(deployed, DeployedColdStart) else None, replica_rows
    )
    app = bench_app()
    repeated = f"`{app.read.label}`" if app.read else f"`{app.health.label}`" if app.health else "requests"
    met = sum(t.met for t in found)
    versions = ", ".join(f"{name} {version(name)}" for name in PACKAGES)
    parts = [
        "# Benchmark results (`make bench`)",
        "",
        f"Latest run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {versions}; PostgreSQL 15 + PgBouncer 1.18 (transaction mode), TLS 1.3 + "
        f"SCRAM on loopback. `make bench` took {seconds:.0f} s. Targets met: {met} of {len(found)}.",
        "",
        "Profiles, side by side in one run on one stack: **seed** = the engine a typical guide builds (QueuePool 5/10 "
        "+ `pool_pre_ping`, stock `postgresql+pg8000`; devtools/bench/seed.py); **psycopg null / pool1 / autocommit** "
        "= psycopg 3 through `postgresql+psycopg` with `prepare_threshold=None` (SQLAlchemy's setting for PgBouncer): "
        "NullPool; a pool of one (no overflow, no pre-ping); that pool with `isolation_level=AUTOCOMMIT` (safe behind "
        "the pooler with libpq, which sends one Sync per statement, but a unit of several statements is no longer "
        "atomic); **template stock** = this template with `DB_DRIVER=stock` (SQLAlchemy's pg8000 dialect); "
        "**template** = this template's default (`DB_MODE=serverless`, `DB_POOL=tiny`, the pipelined driver). Every "
        "profile runs the app's own handlers (template.yaml names them; the requests are app.toml's [bench]): the "
        "seed and psycopg profiles with their engine in place of the kit's (built on the first request, like the "
        "template's, and without the kit's engine events: no server-side limits, no idle ping, no pipelining), so "
        "the same routes, SQL and Powertools decorators run on each: only the connection layer differs.",
        "",
        "## Targets",
        "",
        report.targets_table(found),
        "",
        "## Round trips per request",
        "",
        "Round trips = client→server flights counted by devtools/proxy.py between the app and PgBouncer (the Terminate "
        "of a closing connection excluded: nothing waits for it), the range over every sample at every delay (when "
        "one delay differs, the detail table says which); new conns = TCP connections opened; pings = liveness "
        "checks (pre-ping or idle ping); xacts and hold = transactions PgBouncer counted and the time it held a "
        "server connection for them (SHOW STATS total_xact_count / total_xact_time on its admin console): the pooler "
        f"capacity one request uses. Hold and wall time: medians of {runs} runs per column, with "
        f"{', '.join(f'{d:g}' for d in DELAYS_MS)} ms added per direction by the proxy (a round trip costs twice "
        "that; +20 ms is a cross-region link). Every request goes through the real handler with an events/ file and "
        "a fake Lambda context.",
        "",
        "The ORM rows run the same Session code (devtools/bench/orm.py, on a table of the bench, not the app) as one "
        "unit of work each, inside a fake invocation: on the template profiles through `run_in_session` (get by key "
        "and the page with `single_statement=True, read_only=True`, the insert with `single_statement=True`, update "
        "and delete as ordinary units, where COMMIT rides with the flush's one statement on the pipelined driver); on "
        "the peers as a guide writes it, `with Session(engine) as session, session.begin(): ...`. psycopg autocommit "
        "commits each statement on its own, so its get-modify-flush is two transactions and not atomic.",
        "",
        *_round_trip_tables(rows),
        "",
        "\\* idle longer than `DB_IDLE_PING_SECONDS` (set to 0.1 s for this row only; default 60 s): the template "
        "pings once before reusing the connection; the seed pings on every checkout anyway.",
        "",
        "## Round trips with a read replica",
        "",
        replica_section(replica_rows, runs) if replica_rows else "(skipped)",
        "",
        "## Driver steps",
        "",
        report.steps_table(steps),
        "",
        "## New connection: SSLRequest vs direct TLS",
        "",
        f"Client flights until a new connection is ready (TCP, TLS 1.3, SCRAM, startup), counted at "
        f"+{COUNT_DELAY_MS:g} ms by devtools/proxy.py in front of the local Neon stand-in (devtools/neon_standin.py; "
        f"PgBouncer 1.18 has no direct TLS), {runs} connections each; wall time is their median.",
        "",
        negotiation_table(new_connections),
        "",
        "## Cold start as deployed",
        "",
        deployed_coldstart.section(deployed)
        if isinstance(deployed, DeployedColdStart)
        else f"(skipped: {deployed or 'not run'})",
        "",
        "## Import time in the dev venv (what our modules add to their libraries)",
        "",
        f"Each handler module imported in a fresh interpreter of the dev venv (its `__pycache__` warm), against "
        f"importing exactly the third-party modules our modules import at top level; {import_runs} rounds, the two "
        "back to back in each; import ms are medians, a ratio is the median of the rounds' ratios (quartiles in "
        "brackets). *Added after deps*: one run with `python -X importtime` that imports the dependencies first: the "
        "self time of every module the handler adds, and the largest of them.",
        "",
        report.import_table(imports) if imports else "(skipped)",
        "",
        "## Scale",
        "",
        "Every request issued is counted once: completed (answered 200), failed (an error answer or an exception) or "
        "not started (its environment's time was up first); a target fails if any request was not started. Pooler "
        "columns come from PgBouncer's admin console during the run: peak busy / open servers = most server "
        "connections assigned to a client / open at all at once (SHOW POOLS sv_active / all sv_ states, polled "
        "every 20 ms), peak waiting = most clients queued for one, mean busy servers = the mean of the "
        "sv_active samples.",
        "",
        f"**processes**: N execution environments as N separate processes at once (devtools/bench/environments.py), "
        f"each a fresh interpreter that imports the app's handler, opens its connection with one warm-up request, "
        f"then runs {REQUESTS_PER_PROCESS} sequential {repeated} when all are ready: the throughput row.",
        "",
        "**threads**: N execution environments = N threads in one process, each with its own engine "
        f"(`lib.dbkit.engine.execution_environment`) and event loop, up to {REQUESTS_PER_ENVIRONMENT} sequential "
        f"{repeated} through the app's handler, all starting together and holding their connections "
        "until all finish; the function's Lambda timeout (template.yaml) per request; no new "
        f"request after {PHASE_LIMIT_S:g} s. On a private stack (Postgres max_connections=20, PgBouncer "
        "default_pool_size=10) so the direct runs cannot disturb the shared one. Latency and throughput are bound "
        "by this one process's CPU (every environment's TLS + SCRAM handshake and handler run share 2 cores and one "
        "GIL), not by the database: read the error columns, not the milliseconds. Postgres keeps 2 of its 20 "
        "connections for superusers, so at most 18 environments get a direct connection; the rest retry (the engine, "
        "bounded by the deadline) and fail with SQLSTATE 53300 *too many clients*: the reason serverless mode "
        "refuses a direct URL.",
        "",
        report.scale_table(scale) if scale else "(skipped)",
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=4, help="wall-time samples per scenario and delay")
    parser.add_argument("--import-runs", type=int, default=DEFAULT_RUNS, help="fresh process pairs per handler")
    parser.add_argument("--scale", type=int, nargs="*", default=list(ENVIRONMENT_COUNTS), help="N values; none: skip")
    parser.add_argument(
        "--processes", type=int, nargs="*", default=list(PROCESS_COUNTS), help="N environment processes; none: skip"
    )
    parser.add_argument("--no-imports", action="store_true", help="skip both cold-start measurements")
    parser.add_argument(
        "--deployed-runs", type=int, default=deployed_coldstart.DEFAULT_RUNS, help="deployed cold-start rounds"
    )
    parser.add_argument(
        "--coldstart-only",
        action="store_true",
        help="only the deployed cold start (make bench-coldstart): print its section, write nothing",
    )
    parser.add_argument(
        "--replica-only",
        action="store_true",
        help="only the round trips with a read replica: print their section, write nothing",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file to write ('-' for none)")
    args = parser.parse_args(argv)
    if args.replica_only:
        replica_rows = _replica_round_trips(args.runs)
        found = report.targets([], [], [], [], None, replica_rows)
        print(f"{report.targets_table(found)}\n\n{replica_section(replica_rows, args.runs)}")
        return 0 if all(target.met for target in found) else 1
    if args.coldstart_only:
        result = measure_deployed(args.deployed_runs, log=_log)
        print(deployed_coldstart.section(result) if isinstance(result, DeployedColdStart) else f"skipped: {result}")
        return 0 if isinstance(result, DeployedColdStart) else 1
    started = time.perf_counter()
    _log("round trips through the proxy (seed, psycopg 3 x3, template stock, template) ...")
    rows, steps = _round_trips(args.runs)
    _log("round trips with the read replica (template stock, template) ...")
    replica_rows = _replica_round_trips(args.runs)
    _log("new connections through the Neon stand-in: SSLRequest vs direct TLS ...")
    new_connections = _new_connections(args.runs)
    imports: list[ImportTiming] = []
    deployed: DeployedColdStart | str | None = None
    if not args.no_imports:
        deployed = measure_deployed(args.deployed_runs, log=_log)
        _log(f"handler import times in the dev venv ({args.import_runs} fresh processes each) ...")
        imports = measure_imports(args.import_runs)
    scale: list[LoadResult] = []
    if args.scale or args.processes:
        _log(f"scale: threads N = {args.scale}, processes N = {args.processes} ...")
        scale = _scale(tuple(args.scale), tuple(args.processes))
    document = _document(
        rows,
        steps,
        new_connections,
        imports,
        scale,
        deployed,
        replica_rows,
        runs=args.runs,
        import_runs=args.import_runs,
        seconds=time.perf_counter() - started,
    )
    print(document)
    if str(args.output) != "-":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(document, encoding="utf-8")
        _log(f"written to {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
