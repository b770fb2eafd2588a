"""Scale: N simulated execution environments, each with its own engine and one request at a time, on a private stack.

The load runs against a second, throw-away stack (tools.stack with NEON_STACK_DIR) so that filling Postgres'
max_connections on the direct URL cannot disturb anybody else using the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from lib.dbkit import engine as lib_engine
from tools.bench.profiles import CapturedLogs, lambda_context, set_database_environment, template_environment
from tools.bench.roundtrips import create_note_event, get_note_event

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT_COUNTS = (50, 200, 500)
REQUESTS_PER_ENVIRONMENT = 3
# The API function's timeout in template.yaml; it bounds lib.dbkit.engine's connect retries.
REQUEST_TIMEOUT_MS = 25_000
# No environment starts another request after this long; a request already running ends by its own deadline.
PHASE_LIMIT_S = 15.0
# Every environment waits here before it starts and before it shuts down, so all N hold a connection at once.
BARRIER_TIMEOUT_S = 120.0
THREAD_STACK_BYTES = 1 << 20


@dataclass(frozen=True)
class LoadResult:
    """One load run: N environments, their requests, what failed (by response code / SQLSTATE), latency, throughput."""

    target: str
    environments: int
    requests: int
    errors: int
    error_kinds: dict[str, int]
    p50_ms: float
    p99_ms: float
    throughput: float
    seconds: float


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
            _run([sys.executable, "-m", "tools.stack", "up"], environ)
            for line in (stack.directory / "stack" / "env").read_text().splitlines():
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").partition("=")
                    stack.env[name] = value.strip("'")
            _run(
                [sys.executable, "-m", "lib.dbkit.migrate"],
                {**environ, "DATABASE_URL": stack.env["DIRECT_DATABASE_URL"]},
            )
        except BaseException:
            stack.close()
            raise
        return stack

    def close(self) -> None:
        environ = {**os.environ, "NEON_STACK_DIR": str(self.directory / "stack")}
        subprocess.run([sys.executable, "-m", "tools.stack", "clean"], env=environ, cwd=ROOT, capture_output=True)
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
    note_id: str,
    logs: CapturedLogs,
) -> LoadResult:
    """N threads, each its own engine, up to REQUESTS_PER_ENVIRONMENT sequential GET /notes/{id} requests each."""
    from handlers.api import handler

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
                break
            began = time.perf_counter()
            try:
                response = handler(get_note_event(note_id), lambda_context(timeout_ms=REQUEST_TIMEOUT_MS))
                kind = None if response.get("statusCode") == 200 else _error_kind(response)
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
                with lock:
                    errors["environment did not finish in time"] += 1
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
    start.wait()
    began = time.perf_counter()
    with contextlib.suppress(threading.BrokenBarrierError):
        finish.wait()
    seconds = time.perf_counter() - began
    for thread in threads:
        thread.join(BARRIER_TIMEOUT_S)
    ordered = sorted(latencies)
    failed = sum(errors.values())
    kinds = dict(errors) | {f"logged SQLSTATE {code}": count for code, count in sorted(logs.sqlstates.items())}
    return LoadResult(
        target=target,
        environments=environments,
        requests=len(latencies),
        errors=failed,
        error_kinds=kinds,
        p50_ms=statistics.median(ordered) if ordered else 0.0,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0,
        throughput=(len(latencies) - failed) / seconds if seconds else 0.0,
        seconds=seconds,
    )


def run_scale(
    logs: CapturedLogs, counts: tuple[int, ...] = ENVIRONMENT_COUNTS, targets: tuple[str, ...] = ("pooler", "direct")
) -> list[LoadResult]:
    """On the direct URL (server mode) and through the pooler (template default), for each N."""
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
            from handlers.api import handler

            created = handler(create_note_event(ttl_seconds=3600), lambda_context())
            note_id = json.loads(created["body"])["id"]
            lib_engine.dispose_engine()
            results = []
            # Direct first: afterwards PgBouncer keeps up to default_pool_size server connections open for a while,
            # which would take slots of max_connections away from the direct runs.
            for target, environ in (("direct URL (server mode)", direct), ("pooler (template default)", pooled)):
                if target.split()[0] not in targets:
                    continue
                for count in counts:
                    results.append(run_load(target, environ, count, note_id, logs))
        return results
    finally:
        set_database_environment({})
        stack.close()
