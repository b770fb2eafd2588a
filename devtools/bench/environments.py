"""Execution environments as separate processes: N at once, each its own interpreter, engine and connection.

Threads in one process (devtools.bench.scale) share a GIL, so they show errors and pooler behaviour, but not throughput.
Here each environment is a fresh interpreter (devtools.bench.environment_worker) that imports the app's handler (by
its name in template.yaml), builds its own engine and opens its own connection with one warm-up request; then all
start their measured requests together.
(Forking the bench instead would be cheaper but hangs: the child inherits AnyIO's worker-thread pool without its
threads.)
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from devtools.bench import environment_worker
from devtools.bench.environment_worker import Work
from devtools.bench.scale import LoadResult, PoolerSampler, percentile
from devtools.function_config import FunctionConfig
from devtools.paths import ROOT
from lib.dbkit.settings import DATABASE_VARIABLES

# One N at the top of the 16-32 range: each environment pays a real import (INIT) first, ~1 min for 32 on 2 cores.
PROCESS_COUNTS = (32,)
REQUESTS_PER_PROCESS = 50
# Covers N fresh interpreters importing the handler on 2 cores.
START_TIMEOUT_S = 180.0
# Beyond the phase limit, a request started last may take its timeout; then the report has this long to arrive.
REPORT_MARGIN_S = 30


def _spawn(environ: dict[str, str], work: Work, event_file: Path) -> subprocess.Popen[str]:
    env = {name: value for name, value in os.environ.items() if name not in DATABASE_VARIABLES} | environ
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.bench.environment_worker", *work.argv(str(event_file))],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
    return process.stdout.readline() if ready else ""


def run_processes(
    environ: dict[str, str],
    request: tuple[FunctionConfig, dict[str, Any]],
    count: int,
    pooler_url: str,
    requests: int = REQUESTS_PER_PROCESS,
) -> LoadResult:
    """`count` environment processes at once, all starting their measured requests together (the app's `request`)."""
    function, event = request
    work = Work(function.handler, function.logical_id, function.timeout_seconds * 1000, event, requests)
    with tempfile.TemporaryDirectory(prefix="bench-environments-") as scratch:
        event_file = Path(scratch) / "event.json"
        event_file.write_text(json.dumps(event), encoding="utf-8")
        return _run(environ, work, event_file, count, pooler_url)


def _run(environ: dict[str, str], work: Work, event_file: Path, count: int, pooler_url: str) -> LoadResult:
    processes = [_spawn(environ, work, event_file) for _ in range(count)]
    requests = work.requests
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    reported_not_started = 0
    sampler = PoolerSampler(pooler_url)
    try:
        ready_by = time.monotonic() + START_TIMEOUT_S
        ready = [process for process in processes if _read_line(process, ready_by).strip() == "ready"]
        failures["environment not ready in time"] += count - len(ready)
        sampler.start()
        began = time.perf_counter()
        for process in ready:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        report_by = time.monotonic() + environment_worker.PHASE_LIMIT_S + work.timeout_ms / 1000 + REPORT_MARGIN_S
        for process in ready:
            line = _read_line(process, report_by)
            if not line:
                failures["environment process gave no report"] += 1
                continue
            report = json.loads(line)
            latencies.extend(report["latencies_ms"])
            failures.update(report["failures"])
            reported_not_started += report["not_started"]
        seconds = time.perf_counter() - began
    finally:
        usage = sampler.stop() if sampler.started else None
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    failures = Counter({kind: n for kind, n in failures.items() if n})
    issued = count * requests
    failed = sum(n for kind, n in failures.items() if not kind.startswith("environment"))
    completed = len(latencies) - failed
    return LoadResult(
        target="pooler (template default)",
        environments=count,
        issued=issued,
        completed=completed,
        failed=failed,
        not_started=issued - completed - failed,
        error_kinds=dict(failures),
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        throughput=completed / seconds if seconds else 0.0,
        seconds=seconds,
        pooler=usage,
        kind="processes",
    )
