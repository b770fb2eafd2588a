"""Scale: N simulated execution environments, each with its own engine and one request at a time, on a private stack.

The load runs against a second, throw-away stack (devtools.stack with NEON_STACK_DIR) so that filling Postgres'
max_connections on the direct URL cannot disturb anybody else using the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools import migrate
from devtools.bench.app import bench_app, succeeded
from devtools.bench.pooler_stats import PoolerConsole, PoolerTotals
from devtools.bench.profiles import (
    CapturedLogs,
    invoke_handler,
    lambda_context,
    set_database_environment,
    template_environment,
)
from devtools.function_config import FunctionConfig
from devtools.paths import ROOT
from lib.dbkit import engine as lib_engine

ENVIRONMENT_COUNTS = (50, 200, 500)
# One N on the direct URL is enough to show why serverless mode refuses it (each such run lasts a Lambda timeout).
DIRECT_COUNTS = (50,)
REQUESTS_PER_ENVIRONMENT = 3
# No environment starts another request after this long; a request already running ends by its own deadline.
PHASE_LIMIT_S = 15.0
# Every environment waits here before it starts and before it shuts down, so all N hold a connection at once.
BARRIER_TIMEOUT_S = 120.0
THREAD_STACK_BYTES = 1 << 20
ENVIRONMENT_FAILED = "environment did not finish in time"


@dataclass(frozen=True)
class PoolerUsage:
    """What PgBouncer did for a run: most server connections busy (assigned to a client) and open at once, most
    clients waiting for one, the mean number busy over the samples, and the transactions it counted.
    """

    peak_busy_servers: int
    peak_open_servers: int
    peak_waiting: int
    mean_busy_servers: float
    transactions: int


@dataclass(frozen=True)
class LoadResult:
    """One load run: every request issued is completed (answered 2xx), failed (an error answer or exception) or not
    started (the run's time was up before its turn); latency of the started ones, throughput of the completed ones.
    """

    target: str
    environments: int
    issued: int
    completed: int
    failed: int
    not_started: int
    error_kinds: dict[str, int]
    p50_ms: float
    p99_ms: float
    throughput: float
    seconds: float
    pooler: PoolerUsage | None = None
    kind: str = "threads"

    @property
    def errors(self) -> int:
        return self.failed

    @property
    def requests(self) -> int:
        """Requests started (completed or failed)."""
        return self.completed + self.failed


class PoolerSampler:
    """Polls SHOW POOLS in the background during a run and takes SHOW STATS before and after it."""

    def __init__(self, url: str, interval_s: float = 0.02) -> None:
        self._console = PoolerConsole(url)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="pooler-sampler", daemon=True)
        self._before: PoolerTotals | None = None
        self._started = 0.0
        self.started = False
        self.peak_busy = 0
        self.peak_open = 0
        self.peak_waiting = 0
        self.busy_samples: list[int] = []

    def _poll(self) -> None:
        while not self._stop.is_set():
            usage = self._console.pools()
            self.peak_busy = max(self.peak_busy, usage.server_active)
            self.busy_samples.append(usage.server_active)
            self.peak_open = max(self.peak_open, usage.servers_open)
            self.peak_waiting = max(self.peak_waiting, usage.clients_waiting)
            self._stop.wait(self._interval_s)

    def start(self) -> PoolerSampler:
        self._before = self._console.totals()
        self._started = time.perf_counter()
        self._thread.start()
        self.started = True
        return self

    def stop(self) -> PoolerUsage:
        self._stop.set()
        self._thread.join()
        assert self._before is not None
        held = self._console.totals() - self._before
        self._console.close()
        return PoolerUsage(
            peak_busy_servers=self.peak_busy,
            peak_open_servers=self.peak_open,
            peak_waiting=self.peak_waiting,
            # Not SHOW STATS' xact time / duration: with clients queued that exceeds the pool size (it is client time).
            mean_busy_servers=statistics.fmean(self.busy_samples) if self.busy_samples else 0.0,
            transactions=held.transactions,
        )


@dataclass
class PrivateStack:
    """A second local stack in a temporary folder; `close` stops it and deletes its files."""

    directory: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls) -> PrivateStack:
        stack = cls(Path(tempfile.mkdtemp(prefix="bench-stack-")))
        environ = {**os.environ, "NEON_STACK_DIR": str(stack.directory / "stack")}
        try:
            _run([sys.executable, "-m", "devtools.stack", "up"], environ)
            for line in (stack.directory / "stack" / "env").read_text().splitlines():
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").partition("=")
                    stack.env[name] = value.strip("'")
            migrate.upgrade({"DIRECT_DATABASE_URL": stack.env["DIRECT_DATABASE_URL"]})
        except BaseException:
            stack.close()
            raise
        return stack

    def close(self) -> None:
        environ = {**os.environ, "NEON_STACK_DIR": str(self.directory / "stack")}
        subprocess.run([sys.executable, "-m", "devtools.stack", "clean"], env=environ, cwd=ROOT, capture_output=True)
        subprocess.run(["rm", "-rf", str(self.directory)], check=False)


def _run(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:4])} failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")


@contextmanager
def _no_metrics() -> Iterator[None]:
    # One Metrics object shared by hundreds of threads is a simulation artefact (each Lambda environment has its own)
    # and it is not thread-safe: drop metric values during the load instead of corrupting them.
    from lib.dbkit.observability import metrics

    metrics.add_metric = lambda *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del metrics.add_metric


def _error_kind(response: dict[str, Any]) -> str:
    try:
        code = json.loads(response.get("body") or "{}").get("error", {}).get("code", "")
    except (ValueError, AttributeError):
        code = ""
    return f"HTTP {response.get('statusCode')} {code}".strip()


def run_load(
    target: str,
    environ: dict[str, str],
    environments: int,
    request: tuple[FunctionConfig, dict[str, Any]],
    logs: CapturedLogs,
    pooler_url: str | None = None,
) -> LoadResult:
    """N threads, each its own engine, up to REQUESTS_PER_ENVIRONMENT sequential `request`s each (the app's read)."""
    # Each request gets the function's timeout from template.yaml: it bounds lib.dbkit.engine's connect retries.
    function, event = request
    handler = function.import_handler()
    set_database_environment(environ)
    logs.sqlstates.clear()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(environments + 1, timeout=BARRIER_TIMEOUT_S)
    finish = threading.Barrier(environments + 1, timeout=BARRIER_TIMEOUT_S)

    def requests() -> None:
        start.wait()
        stop_at = time.monotonic() + PHASE_LIMIT_S
        for _ in range(REQUESTS_PER_ENVIRONMENT):
            if time.monotonic() > stop_at:
                # The rest of this environment's requests are not started: counted as issued minus answered.
                break
            began = time.perf_counter()
            try:
                response = handler(copy.deepcopy(event), lambda_context(function))
                kind = None if succeeded(response) else _error_kind(response)
            except Exception as error:  # noqa: BLE001 - every failure is counted, by type.
                kind = type(error).__name__
            with lock:
                latencies.append((time.perf_counter() - began) * 1000)
                if kind is not None:
                    errors[kind] += 1
        finish.wait()

    def environment() -> None:
        # Each Lambda environment runs its invocations on its own thread, with its own event loop and engine.
        asyncio.set_event_loop(asyncio.new_event_loop())
        with lib_engine.execution_environment(lib_engine.EngineHolder()) as holder:
            try:
                requests()
            except threading.BrokenBarrierError:
                # Counted as an environment failure; its requests that never ran are not started.
                with lock:
                    errors[ENVIRONMENT_FAILED] += 1
            finally:
                holder.dispose()
                asyncio.get_event_loop().close()

    previous_stack_size = threading.stack_size(THREAD_STACK_BYTES)
    try:
        threads = [threading.Thread(target=environment, name=f"env-{i}") for i in range(environments)]
        for thread in threads:
            thread.start()
    finally:
        threading.stack_size(previous_stack_size)
    sampler = PoolerSampler(pooler_url) if pooler_url else None
    start.wait()
    began = time.perf_counter()
    if sampler:
        sampler.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        finish.wait()
    seconds = time.perf_counter() - began
    usage = sampler.stop() if sampler else None
    for thread in threads:
        thread.join(BARRIER_TIMEOUT_S)
    issued = environments * REQUESTS_PER_ENVIRONMENT
    failed = sum(count for kind, count in errors.items() if kind != ENVIRONMENT_FAILED)
    completed = len(latencies) - failed
    kinds = dict(errors) | {f"logged SQLSTATE {code}": count for code, count in sorted(logs.sqlstates.items())}
    return LoadResult(
        target=target,
        environments=environments,
        issued=issued,
        completed=completed,
        failed=failed,
        not_started=issued - completed - failed,
        error_kinds=kinds,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        throughput=completed / seconds if seconds else 0.0,
        seconds=seconds,
        pooler=usage,
    )


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values): p50 = the median of an odd count."""
    if not values:
        return 0.0
    ordered = sorted(values)
    if fraction == 0.5:
        return float(statistics.median(ordered))
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def run_scale(
    logs: CapturedLogs,
    counts: tuple[int, ...] = ENVIRONMENT_COUNTS,
    *,
    direct_counts: tuple[int, ...] = DIRECT_COUNTS,
    process_counts: tuple[int, ...] = (),
) -> list[LoadResult]:
    """Threads on the direct URL (server mode) and through the pooler (template default), then processes."""
    from devtools.bench.environments import run_processes

    stack = PrivateStack.start()
    try:
        env = stack.env
        # PgBouncer itself, as in the bench's earlier runs: the Neon stand-in would add its own CPU to this process's.
        pooled = template_environment(env["PGBOUNCER_DATABASE_URL"], env["DB_POOLER_HOSTS"], pool="tiny")
        direct = {
            "DATABASE_URL": env["DIRECT_DATABASE_URL"],
            "DB_MODE": "server",
            "DB_POOLER_HOSTS": env["DB_POOLER_HOSTS"],
        }
        with _no_metrics():
            set_database_environment(pooled)
            request = bench_app().repeated_request(invoke_handler)
            lib_engine.dispose_engine()
            results = []
            # Direct first: afterwards PgBouncer keeps up to default_pool_size server connections open for a while,
            # which would take slots of max_connections away from the direct runs.
            for count in direct_counts:
                results.append(run_load("direct URL (server mode)", direct, count, request, logs))
            for count in counts:
                results.append(
                    run_load("pooler (template default)", pooled, count, request, logs, env["PGBOUNCER_DATABASE_URL"])
                )
            set_database_environment({})
        for count in process_counts:
            results.append(run_processes(pooled, request, count, env["PGBOUNCER_DATABASE_URL"]))
        return results
    finally:
        set_database_environment({})
        stack.close()
