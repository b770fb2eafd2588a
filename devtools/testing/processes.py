"""Execution environments as real OS processes (spawned: each builds its own engine) that fire one request together."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
from multiprocessing.synchronize import Barrier
from typing import Any

START_TIMEOUT = 120.0


def alive(pid: int) -> bool:
    """Whether a process with this id exists (one of ours: another user's would raise PermissionError)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _environment(
    environ: dict[str, str],
    handler_name: str,
    warm_up: dict[str, Any],
    barrier: Barrier,
    event: dict[str, Any],
    results: Any,
    number: int,
) -> None:
    os.environ.update(environ)
    from devtools.testing.lambda_runtime import FakeLambdaContext

    module, _, attribute = handler_name.rpartition(".")
    handler = getattr(importlib.import_module(module), attribute)
    # Warm up first (import, engine, a pooled connection), so the requests under test really overlap.
    handler(warm_up, FakeLambdaContext())
    barrier.wait(timeout=START_TIMEOUT)
    response = handler(event, FakeLambdaContext())
    results.put((number, response["statusCode"], dict(response["headers"]), json.loads(response["body"] or "null")))


def fire_together(
    environ: dict[str, str], events: list[dict[str, Any]], *, handler: str, warm_up: dict[str, Any]
) -> list[tuple[int, dict[str, str], Any]]:
    """Send events[i] from process i to `handler` ("module.function", as template.yaml names it), all released at
    once after each answered `warm_up`; (status, headers, body) in order."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(events))
    results = context.Queue()
    quiet = {**environ, "POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
    processes = [
        context.Process(target=_environment, args=(quiet, handler, warm_up, barrier, event, results, number))
        for number, event in enumerate(events)
    ]
    for process in processes:
        process.start()
    try:
        answers = [results.get(timeout=START_TIMEOUT + 60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert all(process.exitcode == 0 for process in processes), [process.exitcode for process in processes]
    return [(status, headers, body) for _, status, headers, body in sorted(answers, key=lambda answer: answer[0])]
