"""The main job, locally: every function in template.yaml invoked in-process with each of its events in events/.

Run by `make demo` after the local stack is up and the schema applied. Output follows `sam local invoke`: the
function's log lines (Powertools JSON, pool events included at DEBUG), the START/END/REPORT lines, then the response.
"""

from __future__ import annotations

import argparse
import json
import sys

from tools.invoke import FunctionConfig, InvokeResult, function_config, invoke
from tools.sam_template import function_ids, load_template

RULE = "─" * 100


def _show(result: InvokeResult, event_name: str) -> None:
    print(f"\n◀ {result.function_id} ← {event_name}: response", flush=True)
    print(json.dumps(result.response, indent=2, default=str), flush=True)


def _summary(results: list[tuple[str, InvokeResult]]) -> None:
    print(f"\n{RULE}\nSummary", flush=True)
    for event_name, result in results:
        outcome = f"HTTP {result.status_code}" if result.status_code is not None else "ok" if result.ok else "error"
        body = result.response if isinstance(result.response, dict) else {}
        detail = body.get("errorMessage", "") if result.error else ""
        print(f"  {result.function_id:<16} {event_name:<48} {outcome:<8} {result.duration_ms:7.1f} ms  {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log-level", default="DEBUG", help="POWERTOOLS_LOG_LEVEL for the functions (DEBUG shows pool events)"
    )
    args = parser.parse_args(argv)
    configs: list[FunctionConfig] = [function_config(fid) for fid in function_ids(load_template())]
    results: list[tuple[str, InvokeResult]] = []
    for config in configs:
        for event_file in config.event_files():
            print(f"\n{RULE}\n▶ sam local invoke {config.logical_id} -e events/{event_file.name}\n", flush=True)
            result = invoke(config.logical_id, event_file, parameters={"LogLevel": args.log_level}, echo=sys.stdout)
            _show(result, event_file.name)
            results.append((event_file.name, result))
    _summary(results)
    print(
        '\nThe local stack is still running (`. .stack/env` to use it, e.g. psql "$DATABASE_URL").\n'
        "Stop it with: make stack-down",
        flush=True,
    )
    unexpected = [name for name, result in results if result.error and not name.startswith("scheduled-02")]
    return 1 if unexpected or not results else 0


if __name__ == "__main__":
    sys.exit(main())
