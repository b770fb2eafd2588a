"""The main job, locally: every function in template.yaml invoked with each of its events in events/, as Lambda would.

Run by `make demo` after the local stack is up and the schema applied. Each function runs under AWS's runtime
interface client (awslambdaric) fed by a local runtime API (devtools.local_lambda), on the Python its Runtime names when
installed. A function's events share one execution environment, as consecutive requests do in Lambda: the first is
the cold start, the others are warm and reuse its engine. Output follows Lambda's log stream: the function's log
lines (Powertools JSON, pool events included at DEBUG) between START and END/REPORT, then the response.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from devtools.function_config import FunctionConfig
from devtools.invoke import environment_line, read_event
from devtools.local_lambda import ExecutionEnvironment, InvokeResult, LocalLambda
from devtools.sam_template import function_ids, load_template

RULE = "─" * 100
ENGINE_CREATED = '"message":"database engine created"'
# Events that exist to show a rejection: their error is the expected outcome.
EXPECTED_ERRORS = ("scheduled-02",)


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


def _summary(results: list[tuple[str, InvokeResult]], runtime: LocalLambda) -> None:
    print(f"\n{RULE}\nSummary (local runtime API: `python -m awslambdaric <handler>` per execution environment)")
    for event_name, result in results:
        outcome = f"HTTP {result.status_code}" if result.status_code is not None else "ok" if result.ok else "error"
        body = result.response if isinstance(result.response, dict) else {}
        detail = body.get("errorMessage", "") if result.error else ""
        print(
            f"  {result.function_id:<14} {event_name:<46} {outcome:<8} {_temperature(result):<10} "
            f"{result.environment_id:<16} {result.duration_ms:7.1f} ms  {detail}"
        )
    engines: Counter[str] = Counter()
    for _, result in results:
        engines[result.function_id] += result.logs.count(ENGINE_CREATED)
    functions = list(dict.fromkeys(result.function_id for _, result in results))
    print("\nPer function:")
    for function_id in functions:
        environments = runtime.environments(function_id)
        print(
            f"  {function_id}: {sum(r.function_id == function_id for _, r in results)} invocations in "
            f"{len(environments)} execution environment(s), {engines[function_id]} database engine(s) created; "
            f"{runtime.describe(function_id)}"
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
    results: list[tuple[str, InvokeResult]] = []
    with LocalLambda(
        parameters={"LogLevel": args.log_level}, log_sink=_show_line, on_new_environment=_announce
    ) as runtime:
        configs: list[FunctionConfig] = [runtime.config(fid) for fid in function_ids(load_template())]
        for config in configs:
            for event_file in config.event_files():
                print(
                    f"\n{RULE}\n▶ {config.logical_id} ({config.handler}, {config.runtime}) ← events/{event_file.name}",
                    flush=True,
                )
                result = runtime.invoke(config.logical_id, read_event(config, event_file))
                _show(result, event_file.name)
                results.append((event_file.name, result))
        _summary(results, runtime)
    print(
        '\nThe local stack is still running (`. .stack/env` to use it, e.g. psql "$DATABASE_URL"); '
        "`make api` serves the API on http://127.0.0.1:3000.\nStop the stack with: make stack-down",
        flush=True,
    )
    unexpected = [name for name, result in results if result.error and not name.startswith(EXPECTED_ERRORS)]
    return 1 if unexpected or not results else 0


if __name__ == "__main__":
    sys.exit(main())
