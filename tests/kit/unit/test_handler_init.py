"""Importing a handler module is its function's INIT: the garbage collector stays out of it, then is on again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devtools.paths import ROOT

PROBE = """
import gc, json, sys
collections = lambda: sum(generation["collections"] for generation in gc.get_stats())
before = collections()
__import__(sys.argv[1])
print(json.dumps({"collections": collections() - before, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("module", ["handlers.api", "handlers.scheduled"])
def test_a_handlers_init_runs_no_collection_and_leaves_the_collector_on_with_its_objects_frozen(module: str) -> None:
    # A fresh interpreter: INIT happens once per process, and this one has imported the handlers already.
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(completed.stdout.splitlines()[-1])
    # With the collector on, INIT runs some 190 collections; here at most the one that may come while the import
    # system loads the handlers package, before its first line turns the collector off.
    assert found["collections"] <= 1
    assert found["enabled"]
    # Everything INIT allocated (tens of thousands of objects) is out of later collections' way.
    assert found["frozen"] > 20_000
