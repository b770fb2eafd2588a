"""``python -m devtools.conformance``: the suites on every driver against stock; ``range``: the pg8000 gate proposal."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools import stack
from devtools.conformance import cluster as clusters
from devtools.conformance import drivers, gate, harness, results, sources, watch

RESULTS_JSON = sources.CACHE / "results.json"
RUNS = sources.CACHE / "runs"


def _say(message: str) -> None:
    print(f"[conformance] {message}", flush=True)


def _server_versions(cluster: clusters.Cluster) -> dict[str, str]:
    postgres = stack.psql_admin(cluster.state, "SHOW server_version").strip()
    bouncer = subprocess.run([stack._find_pgbouncer(), "--version"], capture_output=True, text=True, check=False)
    return {"postgresql": postgres, "pgbouncer": (bouncer.stdout.split("\n")[0].split() or ["?"])[-1]}


def _progress(result: results.RunResult) -> None:
    counts = result.counts()
    summary = result.problem or ", ".join(f"{counts[name]} {name}" for name in results.OUTCOMES)
    _say(f"{result.key.name}: {summary} ({result.seconds:.0f} s)")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    suites = args.suite or list(harness.SUITES)
    keys = harness.plan(suites, args.driver or drivers.DRIVERS, args.route)
    if not keys:
        _say("nothing to run for that selection")
        return 2
    selection = None
    if args.subset:
        selection = {name: chosen for name, chosen in harness.SUBSET.items() if name in suites}
        keys = [key for key in keys if key.suite in selection]
    elif args.test or args.keyword:
        chosen = harness.Selection(tuple(args.test or ()), args.keyword)
        selection = dict.fromkeys(suites, chosen)
    complete = selection is None and not (args.suite or args.driver or args.route)
    try:
        allowlist = results.load_allowlist()
        versions = sources.versions_under_test(allow_unpinned=args.unpinned)
        trees = harness.fetch_trees(versions, {key.suite for key in keys})
    except (sources.SourceError, ValueError) as error:
        _say(f"error: {error}")
        return 2
    _say(", ".join(f"{name} {versions[name]}" for name in versions) + f"; sdists cached in {sources.CACHE}")
    for stale in [*RUNS.glob("*.xml"), *RUNS.glob("*.log")]:
        stale.unlink()
    try:
        with clusters.running() as cluster:
            servers = _server_versions(cluster)
            _say(f"throwaway cluster: PostgreSQL {servers['postgresql']}, PgBouncer {servers['pgbouncer']}, "
                 f"Neon stand-in ({cluster.home})")  # fmt: skip
            outcome = harness.run_all(keys, cluster, trees, RUNS, selection, _progress)
    except (clusters.ClusterError, stack.StackError) as error:
        _say(f"error: {error}")
        return 2
    seconds = time.monotonic() - started
    return _report(outcome, allowlist, versions, servers, complete=complete, seconds=seconds, out=args.results)


def _report(
    outcome: list[results.RunResult],
    allowlist: list[results.Allowance],
    versions: dict[str, str],
    servers: dict[str, str],
    *,
    complete: bool,
    seconds: float,
    out: Path,
) -> int:
    differences = results.compare(outcome, allowlist)
    unexplained = [difference for difference in differences if difference.reason is None]
    allowed = [difference for difference in differences if difference.reason is not None]
    problems = results.problems(outcome)
    rows = results.table(outcome)
    verdict = "pass" if not unexplained and not problems else "fail"
    print()
    print(results.render_text(rows))
    for title, found in (("Unexplained differences", unexplained), ("Allowed differences", allowed)):
        print(f"\n{title} (passed on stock, not on the kit's driver): {len(found)}")
        for line in results.difference_lines(found):
            print(f"  {line}")
    if problems:
        print(f"\nRuns that could not be compared: {len(problems)}")
        for line in problems:
            print(f"  {line}")
    if complete:
        for entry in results.unused_allowances(allowlist, differences):
            print(f"\nallow-list entry matched nothing (remove it?): {entry.suite} {entry.driver} {entry.test}")
    document: dict[str, Any] = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "servers": servers,
        "python": platform.python_version(),
        "complete": complete,
        "seconds": round(seconds),
        "verdict": verdict,
        "unexplained": len(unexplained),
        "runs": rows,
        "differences": [results.as_json(difference) for difference in differences],
        "problems": problems,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(results.render_markdown(rows) + "\n", encoding="utf-8")
    print()
    _say(f"wall time {seconds / 60:.1f} min; results in {out} and {out.with_suffix('.md')}")
    _say(f"verdict: {verdict} ({len(unexplained)} unexplained differences, {len(problems)} runs not compared)")
    return 0 if verdict == "pass" else 1


def report_again(args: argparse.Namespace) -> int:
    """The report of the last run rebuilt from its junit XML (after an allow-list edit), without running anything."""
    previous = json.loads(args.results.read_text(encoding="utf-8")) if args.results.exists() else {}
    outcome = []
    for key in harness.plan():
        junit = RUNS / f"{key.name}.xml"
        if junit.exists():
            per_backend = harness.SUITES[key.suite].package == "SQLAlchemy"
            outcomes, messages = results.parse_junit(junit, per_backend=per_backend)
            outcome.append(results.RunResult(key, outcomes, messages, results.junit_seconds(junit)))
    if not outcome:
        _say(f"no junit reports in {RUNS}: run `make conformance` first")
        return 2
    return _report(
        outcome,
        results.load_allowlist(),
        previous.get("versions", {}),
        previous.get("servers", {}),
        complete=bool(previous.get("complete")) and len(outcome) == len(harness.plan()),
        seconds=float(previous.get("seconds", 0)),
        out=args.results,
    )


def tested_range(args: argparse.Namespace) -> int:
    tested = gate.current()
    _say(f"TESTED_RANGE is {gate.dotted(tested[0])} to {gate.dotted(tested[1])} ({gate.INTERNALS.name})")
    if not args.results.exists():
        _say(f"no results at {args.results} (run `make conformance` first): no evidence, no proposal")
        return 0
    evidence = json.loads(args.results.read_text(encoding="utf-8"))
    proposed, why = gate.proposal(evidence, tested)
    _say(why)
    if proposed is None:
        return 0
    _say(f"proposed TESTED_RANGE: {proposed!r}")
    if args.write:
        gate.write(proposed)
        watch.record_written(tested, proposed)
        _say(f"written to {gate.INTERNALS}")
    return 0


def watch_report(args: argparse.Namespace) -> int:
    steps = dict(step.split("=", 1) for step in args.step)
    body, verdict, propose = watch.compose(
        steps, watch.load_evidence(args.results), sources.pinned_versions(), watch.written_range()
    )
    args.output.write_text(body, encoding="utf-8")
    print(f"verdict={verdict}")
    print(f"proposal={'yes' if propose else 'no'}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.conformance", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    runner = commands.add_parser("run", help="run the suites (the default command)")
    runner.add_argument("--suite", action="append", choices=sorted(harness.SUITES), help="only this suite")
    runner.add_argument("--driver", action="append", choices=drivers.KIT_DRIVERS, help="only this kit driver")
    runner.add_argument("--route", action="append", help="only this route (pg8000-dbapi: postgres, pgbouncer, ...)")
    runner.add_argument("--test", action="append", help="only this pytest node id (relative to the sdist)")
    runner.add_argument("--keyword", help="only tests matching this pytest -k expression")
    runner.add_argument("--subset", action="store_true", help="the representative subset `make test` runs")
    runner.add_argument(
        "--unpinned", action="store_true", help="test the installed releases even if they are not requirements.txt's"
    )
    runner.add_argument("--results", type=Path, default=RESULTS_JSON, help="where the JSON results go")
    ranger = commands.add_parser("range", help="the pg8000 TESTED_RANGE a run's results support")
    ranger.add_argument("--results", type=Path, default=RESULTS_JSON)
    ranger.add_argument("--write", action="store_true", help="write the proposed range into pg8000_internals.py")
    again = commands.add_parser("report", help="rebuild the last run's report from its junit XML (no run)")
    again.add_argument("--results", type=Path, default=RESULTS_JSON)
    reporter = commands.add_parser("watch-report", help="the dependency watch's issue body (GitHub Actions)")
    reporter.add_argument("--step", action="append", default=[], help="NAME=OUTCOME of a workflow step")
    reporter.add_argument("--results", type=Path, default=RESULTS_JSON)
    reporter.add_argument("--output", type=Path, required=True, help="where the markdown body goes")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0].startswith("-"):
        arguments.insert(0, "run")
    args = _parser().parse_args(arguments)
    commands = {"range": tested_range, "report": report_again, "watch-report": watch_report}
    return commands.get(args.command, run)(args)


if __name__ == "__main__":
    sys.exit(main())
