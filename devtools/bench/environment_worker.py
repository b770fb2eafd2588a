"""One execution environment as its own process, driven by devtools.bench.environments over stdin/stdout.

``python -m devtools.bench.environment_worker HANDLER FUNCTION TIMEOUT_MS EVENT_FILE REQUESTS`` with the database
configuration in its environment: imports HANDLER (template.yaml's name for it: its INIT), makes one warm-up request
(opens its connection), prints ``ready``, waits for a line on stdin, runs REQUESTS sequential invocations with the
event in EVENT_FILE (none started after the phase limit) and prints one JSON report.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO

PHASE_LIMIT_S = 15.0


@dataclass(frozen=True)
class Work:
    """What the environment runs: the handler by name, the function it is (name, timeout) and the event."""

    handler: str
    function_name: str
    timeout_ms: int
    event: dict[str, Any]
    requests: int

    def argv(self, event_file: str) -> list[str]:
        return [self.handler, self.function_name, str(self.timeout_ms), event_file, str(self.requests)]


def _failure(response: Any) -> str | None:
    status = response.get("statusCode") if isinstance(response, dict) else None
    if isinstance(status, int) and 200 <= status < 300:
        return None
    try:
        code = json.loads(response.get("body") or "{}").get("error", {}).get("code", "")
    except (ValueError, AttributeError):
        code = ""
    return f"HTTP {response.get('statusCode')} {code}".strip()


def main(work: Work, channel: TextIO) -> dict[str, Any]:
    """Warm up, report ready, wait for the go line, run the requests; the report."""
    from devtools.lambda_context import FakeLambdaContext

    module, _, attribute = work.handler.rpartition(".")
    handler = getattr(importlib.import_module(module), attribute)

    def request() -> Any:
        context = FakeLambdaContext(function_name=work.function_name, timeout_ms=work.timeout_ms)
        return handler(copy.deepcopy(work.event), context)

    requests = work.requests
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    not_started = requests
    try:
        warm_up = _failure(request())
        if warm_up is not None:
            failures[f"environment failed: warm-up {warm_up}"] += 1
        channel.write("ready\n")
        channel.flush()
        sys.stdin.readline()
        stop_at = time.monotonic() + PHASE_LIMIT_S
        for _ in range(requests):
            if time.monotonic() > stop_at:
                break
            not_started -= 1
            began = time.perf_counter()
            try:
                kind = _failure(request())
            except Exception as error:  # noqa: BLE001 - every failure is counted, by type.
                kind = type(error).__name__
            latencies.append((time.perf_counter() - began) * 1000)
            if kind is not None:
                failures[kind] += 1
    except Exception as error:  # noqa: BLE001 - a broken environment is reported, not lost.
        failures[f"environment failed: {type(error).__name__}"] += 1
    return {"latencies_ms": latencies, "failures": dict(failures), "not_started": not_started}


if __name__ == "__main__":
    # The app's JSON logs and EMF metrics go to stdout: keep the real stdout for the protocol, send them to /dev/null.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    handler_name, function_name, timeout_ms, event_file, count = sys.argv[1:6]
    with open(event_file, encoding="utf-8") as file:
        event = json.load(file)
    work = Work(handler_name, function_name, int(timeout_ms), event, int(count))
    protocol.write(json.dumps(main(work, protocol)) + "\n")
    protocol.flush()
