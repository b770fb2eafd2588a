"""The main job, locally: every function in template.yaml invoked with each of its events in events/, as Lambda would.

Run by `make demo` after the local stack is up and the schema applied. Each function runs under AWS's runtime
interface client (awslambdaric) fed by a local runtime API (devtools.local_lambda), on the Python its Runtime names when
installed. A function's events share one execution environment, as consecutive requests do in Lambda: the first is
the cold start, the others are warm and reuse its engine. Output follows Lambda's log stream: the function's log
lines (Powertools JSON, pool events included at DEBUG) between START and END/REPORT, then the response. The summary
says which database served each invocation, from its `pool summary` line: the primary, or the read replica for
read-only units when the stack's replica is configured (DATABASE_READ_URL, as `make demo` passes it to the API). It
also holds each answer against what app.toml says the event should answer; any other answer, or an error app.toml does
not expect, fails the demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from devtools.app_config import AppConfig, AppConfigError, load_app_config
from devtools.function_config import FunctionConfig
from devtools.invoke import environment_line, read_event
from devtools.local_lambda import ExecutionEnvironment, InvokeResult, LocalLambda
from devtools.sam_template import function_ids, load_template

RULE = "─" * 100
ENGINE_CREATED = "database engine created"
POOL_SUMMARY = "pool summary"


def _show_line(_environment: ExecutionEnvironment, line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def _announce(environment: ExecutionEnvironment) -> None:
    print(f"  ({environment_line(environment)})", flush=True)


def _temperature(result: InvokeResult) -> str:
    return "cold start" if result.cold else "warm"


def _show(result: InvokeResult, event_name: str) -> None:
    where = f"{_temperature(result)} in {result.environment_id}"
    print(f"\n◀ {result.function_id} ← {event_name}: response ({where})", flush=True)
    print(json.dumps(result.response, indent=2, default=str), flush=True)


def _records(result: InvokeResult, message: str) -> list[dict[str, Any]]:
    """The function's JSON log lines with this message."""
    found = []
    for line in result.logs.splitlines():
        if f'"message":"{message}"' in line:
            record = json.loads(line)
            if isinstance(record, dict):
                found.append(record)
    return found


def served_by(result: InvokeResult) -> str:
    """Which database the invocation used, from its pool summary: replica, primary, both, or '-' for none."""
    summaries = _records(result, POOL_SUMMARY)
    if not summaries:
        return "-"
    # A unit checks a connection out of the pool of the database it runs on (a 404 read too, which the
    # DbReplicaReads count leaves out: only units that returned count there).
    on_primary = summaries[-1].get("pool_summary", {}).get("checkouts", 0) > 0
    on_replica = summaries[-1].get("replica_pool_summary", {}).get("checkouts", 0) > 0
    fell_back = summaries[-1].get("pool_summary", {}).get("replica_fallbacks", 0)
    if fell_back:
        return f"primary (the replica could not serve {fell_back} read-only unit(s))"
    if on_replica and on_primary:
        return "replica+primary"
    return "replica" if on_replica else "primary" if on_primary else "-"


def verdict(result: InvokeResult, event_name: str, app: AppConfig) -> tuple[str, bool]:
    """What app.toml expects of the event's answer, and whether the answer is that (an error nobody expects is not)."""
    expected = app.expected(event_name)
    error_type = str(result.error.get("errorType", "error")) if result.error else None
    if expected is None:
        return "(no expectation in app.toml)", error_type is None
    mismatch = expected.mismatch(status=result.status_code, error_type=error_type)
    return (f"as expected ({expected.describe()})", True) if mismatch is None else (f"UNEXPECTED: {mismatch}", False)


def _summary(results: list[tuple[str, InvokeResult]], runtime: LocalLambda, app: AppConfig) -> None:
    print(f"\n{RULE}\nSummary (local runtime API: `python -m awslambdaric <handler>` per execution environment)")
    print(
        f"  {'function':<14} {'event':<46} {'outcome':<8} {'':<10} {'environment':<16} {'duration':>10}  "
        f"{'app.toml':<24} database"
    )
    for event_name, result in results:
        outcome = f"HTTP {result.status_code}" if result.status_code is not None else "ok" if result.ok else "error"
        body = result.response if isinstance(result.response, dict) else {}
        detail = f"  {body.get('errorMessage', '')}" if result.error else ""
        print(
            f"  {result.function_id:<14} {event_name:<46} {outcome:<8} {_temperature(result):<10} "
            f"{result.environment_id:<16} {result.duration_ms:7.1f} ms  {verdict(result, event_name, app)[0]:<24} "
            f"{served_by(result)}{detail}"
        )
    engines: Counter[tuple[str, str]] = Counter()
    for _, result in results:
        for record in _records(result, ENGINE_CREATED):
            engines[result.function_id, str(record.get("role", "primary"))] += 1
    functions = list(dict.fromkeys(result.function_id for _, result in results))
    print("\nPer function:")
    for function_id in functions:
        environments = runtime.environments(function_id)
        replica_engines = engines[function_id, "replica"]
        replica = f" (+{replica_engines} for the read replica)" if replica_engines else ""
        print(
            f"  {function_id}: {sum(r.function_id == function_id for _, r in results)} invocations in "
            f"{len(environments)} execution environment(s), {engines[function_id, 'primary']} database engine(s) "
            f"created{replica}; {runtime.describe(function_id)}"
        )
    print(
        "With Docker, `sam local invoke <Function> -e events/<file>` runs the same events in Lambda's image "
        "(docs/deploy.md, 'Running a function locally')."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log-level", default="DEBUG", help="POWERTOOLS_LOG_LEVEL for the functions (DEBUG shows pool events)"
    )
    args = parser.parse_args(argv)
    try:
        app = load_app_config()
    except AppConfigError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    results: list[tuple[str, InvokeResult]] = []
    with LocalLambda(
        parameters={"LogLevel": args.log_level}, log_sink=_show_line, on_new_environment=_announce
    ) as runtime:
        configs: list[FunctionConfig] = [runtime.config(fid) for fid in function_ids(load_template())]
        for config in configs:
            print(f"\n{config.logical_id}: {runtime.database(config.logical_id)}", flush=True)
            for event_file in config.event_files():
                print(
                    f"\n{RULE}\n▶ {config.logical_id} ({config.handler}, {config.runtime}) ← events/{event_file.name}",
                    flush=True,
                )
                result = runtime.invoke(config.logical_id, read_event(config, event_file))
                _show(result, event_file.name)
                results.append((event_file.stem, result))
        _summary(results, runtime, app)
    print(
        '\nThe local stack is still running (`. .stack/env` to use it, e.g. psql "$DATABASE_URL"); '
        "`make api` serves the API on http://127.0.0.1:3000.\nStop the stack with: make stack-down",
        flush=True,
    )
    unexpected = [name for name, result in results if not verdict(result, name, app)[1]]
    if unexpected:
        print(f"Not what app.toml expects: {', '.join(unexpected)}", file=sys.stderr)
    return 1 if unexpected or not results else 0


if __name__ == "__main__":
    sys.exit(main())
