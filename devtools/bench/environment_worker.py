"""One execution environment as its own process, driven by devtools.bench.environments over stdin/stdout.

``python -m devtools.bench.environment_worker NOTE_ID REQUESTS`` with the database configuration in its environment:
imports handlers.api (its INIT), makes one warm-up request (opens its connection), prints ``ready``, waits for a line
on stdin, runs REQUESTS sequential GET /notes/{id} (none started after the phase limit) and prints one JSON report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from typing import Any, TextIO

PHASE_LIMIT_S = 15.0
REQUEST_TIMEOUT_MS = 25_000


def _failure(response: dict[str, Any]) -> str | None:
    if response.get("statusCode") == 200:
        return None
    try:
        code = json.loads(response.get("body") or "{}").get("error", {}).get("code", "")
    except (ValueError, AttributeError):
        code = ""
    return f"HTTP {response.get('statusCode')} {code}".strip()


def main(note_id: str, requests: int, channel: TextIO) -> dict[str, Any]:
    """Warm up, report ready, wait for the go line, run the requests; the report."""
    from devtools.events import load_event, with_note_id
    from devtools.lambda_context import FakeLambdaContext
    from handlers.api import handler

    def get_note() -> dict[str, Any]:
        event = with_note_id(load_event("api-10-get-note-unknown-id"), note_id)
        response: dict[str, Any] = handler(event, FakeLambdaContext(timeout_ms=REQUEST_TIMEOUT_MS))
        return response

    failures: Counter[str] = Counter()
    latencies: list[float] = []
    not_started = requests
    try:
        warm_up = _failure(get_note())
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
                kind = _failure(get_note())
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
    protocol.write(json.dumps(main(sys.argv[1], int(sys.argv[2]), protocol)) + "\n")
    protocol.flush()
