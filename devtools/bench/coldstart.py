"""Import time of each handler module in the dev venv, as a ratio to importing its third-party dependencies alone.

What our own modules add on top of the libraries they use. The cold start as deployed (the built artifact, read-only,
under the runtime client, against the naive baseline) is devtools.bench.deployed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

from devtools.function_config import function_config
from devtools.paths import ROOT
from devtools.sam_template import function_ids, load_template

# Where the template's own code lives (what the deploy artifact ships besides its requirements).
OWN_PACKAGES = frozenset({"lib", "handlers"})
TARGET_RATIO = 1.15
# What a typical app on the same stack imports at its top (the ORM for its Session included): the deployed cold start
# of the app's handler is held against it (devtools.bench.deployed).
NAIVE_BASELINE = ("fastapi", "mangum", "sqlalchemy", "sqlalchemy.orm", "pg8000", "aws_lambda_powertools")
# Fresh-process import times on a busy 2-core machine vary by ±20 % from one process to the next; 11 rounds keep
# the median's own uncertainty near 6 %.
DEFAULT_RUNS = 11

# Runs in a fresh interpreter: the clock starts after interpreter start-up, so only the imports are timed.
_TIMED_IMPORT = """
import importlib, sys, time
started = time.perf_counter()
for name in sys.argv[1:]:
    importlib.import_module(name)
print(time.perf_counter() - started)
"""

_MARKER = "--- dependencies imported ---"
_IMPORT_AFTER_DEPENDENCIES = f"""
import importlib, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
print({_MARKER!r}, file=sys.stderr, flush=True)
importlib.import_module(sys.argv[1])
"""

# Lists the third-party modules our modules import at their top level once the handler is imported.
_FIND_DEPENDENCIES = """
import ast, importlib, importlib.util, json, sys
handler, own = sys.argv[1], set(sys.argv[2].split(","))
importlib.import_module(handler)
found = []

def third_party(name):
    top = name.partition(".")[0]
    return top not in own and top not in sys.stdlib_module_names and top != "__future__"

def top_level(body):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                yield from top_level(node.body)
                yield from top_level(node.orelse)
        elif isinstance(node, ast.Try):
            yield from top_level(node.body)

for name, module in sorted(sys.modules.items()):
    if name.partition(".")[0] not in own or not getattr(module, "__file__", None):
        continue
    tree = ast.parse(open(module.__file__, encoding="utf-8").read())
    for node in top_level(tree.body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif node.level == 0 and node.module:
            names = [node.module]
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in sys.modules or importlib.util.find_spec(node.module).submodule_search_locations and \\
                        importlib.util.find_spec(sub) is not None:
                    names.append(sub)
        else:
            names = []
        found.extend(n for n in names if third_party(n) and n in sys.modules)
print(json.dumps(sorted(set(found))))
"""


@dataclass(frozen=True)
class ImportTiming:
    """Median import times of one handler and of its third-party dependencies alone, and what the excess is."""

    handler: str
    dependencies: tuple[str, ...]
    handler_ms: float
    dependencies_ms: float
    ratio: float
    ratio_quartiles: tuple[float, float]
    runs: int
    added_ms: float
    excess: tuple[tuple[str, float], ...]

    @property
    def met(self) -> bool:
        return self.ratio <= TARGET_RATIO


def _environment() -> dict[str, str]:
    # No database settings at all: importing a handler must not need them (the engine is built on first use).
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _python(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_environment(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"python {' '.join(args[:2])} failed:\n{result.stderr[-2000:]}")
    return result.stdout if args[0] != "-X" else result.stderr


def dependencies_of(handler: str) -> tuple[str, ...]:
    """Third-party modules imported at the top level of the handler and every lib module it loads."""
    return tuple(json.loads(_python("-c", _FIND_DEPENDENCIES, handler, ",".join(sorted(OWN_PACKAGES)))))


def _timed(modules: tuple[str, ...]) -> float:
    """Milliseconds to import `modules` in a fresh interpreter."""
    return float(_python("-c", _TIMED_IMPORT, *modules)) * 1000


def _excess(handler: str, dependencies: tuple[str, ...]) -> list[tuple[str, float]]:
    """What importing the handler adds once its dependencies are loaded: every new module and its own (self) time."""
    log = _python("-X", "importtime", "-c", _IMPORT_AFTER_DEPENDENCIES, handler, *dependencies)
    _, _, after = log.partition(_MARKER)
    costs: list[tuple[str, float]] = []
    for line in after.splitlines():
        fields = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if line.startswith("import time:") and len(fields) == 3 and fields[0].isdigit():
            costs.append((fields[2], int(fields[0]) / 1000))
    return sorted(costs, key=lambda cost: -cost[1])


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4)
    return low, high


def handler_modules() -> list[str]:
    """The module of every function's handler in template.yaml, once each, in template order."""
    template = load_template()
    return list(dict.fromkeys(function_config(fid).handler_module for fid in function_ids(template)))


def measure_imports(runs: int = DEFAULT_RUNS) -> list[ImportTiming]:
    """Median of `runs` fresh processes each, every variant interleaved in each round so drift hits all alike."""
    timings = []
    for handler in handler_modules():
        dependencies = dependencies_of(handler)
        # One throw-away run each so both sides start with compiled bytecode on disk.
        _timed(dependencies)
        _timed((handler,))
        handler_ms: list[float] = []
        dependencies_ms: list[float] = []
        for _ in range(runs):
            dependencies_ms.append(_timed(dependencies))
            handler_ms.append(_timed((handler,)))
        # A ratio is the median of back-to-back rounds: a round shares the machine's load of the moment.
        ratios = [h / d for h, d in zip(handler_ms, dependencies_ms, strict=True)]
        excess = _excess(handler, dependencies)
        timings.append(
            ImportTiming(
                handler=handler,
                dependencies=dependencies,
                handler_ms=statistics.median(handler_ms),
                dependencies_ms=statistics.median(dependencies_ms),
                ratio=statistics.median(ratios),
                ratio_quartiles=_quartiles(ratios),
                runs=runs,
                added_ms=sum(ms for _, ms in excess),
                excess=tuple(excess[:5]),
            )
        )
    return timings
