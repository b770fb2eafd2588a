"""Cold start as Lambda runs it: the deployed artifact, read-only, started by awslambdaric through a Runtime API.

The artifact of the function the bench probes (app.toml [bench]: its read, else its health check; the handler named in
template.yaml) is built by the SAM build's own steps (devtools/sam/Makefile) for the template's runtime and this
machine's architecture, twice: with its bytecode, as `sam build` ships it, and with LAMBDA_BYTECODE=0, as it shipped
before. Each is copied to a read-only folder (Lambda's code directory is read-only, so nothing a cold start compiles
is kept) with two entry modules beside it: `bench_app`, which imports the handler's module and clocks that, and
`bench_naive`, the naive baseline: an app importing its stack at its top and answering with a constant. Every sample
is a new execution environment of the local Lambda: `python -m awslambdaric <handler>` on the runtime's Python,
polling its own Runtime API. INIT runs from process start until the runtime client first asks for an event (it has
imported the handler module by then); the first invocation from the event's hand-off until the response: the probe's
event as it is in events/ (for the sample, a GET /notes/{id} of an unknown id: engine, TLS + SCRAM connection, query,
404). The variants run interleaved, their order rotating each round, after one discarded warm-up round (files in the
page cache for every variant alike).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devtools.bench.app import bench_app
from devtools.bench.coldstart import NAIVE_BASELINE
from devtools.function_config import FunctionConfig, function_environment, region
from devtools.lambda_context import ACCOUNT_ID
from devtools.local_lambda import ExecutionEnvironment, InvokeResult, lambda_environment, trace_header
from devtools.paths import ROOT
from devtools.runtime_api import NextInvocation
from devtools.runtime_python import RuntimePython, runtime_python

BUILD_ROOT = ROOT / ".aws-sam" / "bench"
MAKEFILE = ROOT / "devtools" / "sam" / "Makefile"
DEFAULT_RUNS = 9
# Import profiles per variant: one -X importtime run is as noisy as one cold start; a per-module median is steadier.
PROFILE_RUNS = 5
TOP_IMPORTS = 15
BYTECODE_TARGET = 0.5
NAIVE_TARGET = 0.9
MACHINE_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
# The kit's connection modules: what the engine needs to connect (the dialects, pg8000), all imported at INIT.
ENGINE_MODULES = frozenset(
    {"lib.dbkit.pg8000_internals", "lib.dbkit.pg_dbapi", "lib.dbkit.pg_pipeline", "lib.dbkit.pg_errors"}
)
# Printed by the entry modules once imported, with the clock (CLOCK_MONOTONIC, the bench's perf_counter too) when their
# import began and ended: INIT splits into the runtime's start and the handler's import, and INIT's imports are the
# -X importtime lines before it (the runtime client imports the handler module with importlib.import_module, which
# -X importtime does not report itself).
INIT_MARKER = "--- bench: handler module imported ---"
_CLOCK = "import sys, time\n\n_began = time.perf_counter()\n"
_MARK = f"print({INIT_MARKER!r}, _began, time.perf_counter(), file=sys.stderr, flush=True)\n"
APP_ENTRY = "bench_app"


def entry_modules(handler: str) -> dict[str, str]:
    """The entry modules beside the artifact: the app's handler (template.yaml's name for it) and the naive baseline."""
    module, _, function = handler.rpartition(".")
    return {
        APP_ENTRY: (
            f'"""{module}, its import clocked."""\n'
            + _CLOCK
            + f"from {module} import {function} as handler  # noqa: E402, F401\n\n"
            + _MARK
        ),
        "bench_naive": (
            '"""The naive baseline: a typical app\'s imports at its top, and a handler that needs none of them."""\n'
            + _CLOCK
            + f"import {', '.join(NAIVE_BASELINE)}  # noqa: E401, E402, F401\n\n"
            + _MARK
            + "\n\ndef handler(event, context):\n"
            + '    return {"statusCode": 200, "body": ""}\n'
        ),
    }


@dataclass(frozen=True)
class Variant:
    """One handler module on one build of the artifact."""

    label: str
    handler: str
    bytecode: bool
    # The status its first invocation answers; None: what app.toml expects of the probe's event.
    status: int | None

    @property
    def name(self) -> str:
        return f"{self.label}, {'bytecode' if self.bytecode else 'no bytecode'}"


API_SOURCE = Variant("app", f"{APP_ENTRY}.handler", bytecode=False, status=None)
API_BYTECODE = replace(API_SOURCE, bytecode=True)
NAIVE_SOURCE = Variant("naive baseline", "bench_naive.handler", bytecode=False, status=200)
NAIVE_BYTECODE = replace(NAIVE_SOURCE, bytecode=True)
VARIANTS = (API_SOURCE, API_BYTECODE, NAIVE_SOURCE, NAIVE_BYTECODE)


@dataclass(frozen=True)
class Sample:
    """One cold start, ms: INIT (the runtime's start, then the handler module's import), the first invocation."""

    init_ms: float
    first_ms: float
    startup_ms: float = 0.0
    import_ms: float = 0.0


def _init(sample: Sample) -> float:
    return sample.init_ms


def _import(sample: Sample) -> float:
    return sample.import_ms


def _startup(sample: Sample) -> float:
    return sample.startup_ms


def _first(sample: Sample) -> float:
    return sample.first_ms


@dataclass(frozen=True)
class ArtifactSize:
    """One build of the artifact: files, bytecode files, bytes unzipped and as a deflated zip (as SAM uploads it)."""

    bytecode: bool
    files: int
    pyc_files: int
    unzipped_bytes: int
    zipped_bytes: int


@dataclass(frozen=True)
class ImportEntry:
    """One line of `-X importtime`: a module, its own time and its time with what it imported, its parent's line."""

    module: str
    self_ms: float
    cumulative_ms: float
    parent: int | None


@dataclass(frozen=True)
class Ratio:
    """The median of per-round ratios and their quartiles."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f})"


@dataclass(frozen=True)
class DeployedColdStart:
    """Every sample of every variant, the builds' sizes, one import profile each of the app and the baseline."""

    handler_module: str
    event_name: str
    python: RuntimePython
    architecture: str
    runs: int
    samples: Mapping[Variant, Sequence[Sample]]
    sizes: tuple[ArtifactSize, ...]
    api_profile: tuple[ImportEntry, ...]
    naive_profile: tuple[ImportEntry, ...]
    first_imports: tuple[ImportEntry, ...]
    load: tuple[float, float]
    seconds: float

    def median(self, variant: Variant, field: Callable[[Sample], float]) -> float:
        return statistics.median(field(sample) for sample in self.samples[variant])

    def ratio(self, numerator: Variant, denominator: Variant, field: Callable[[Sample], float] = _init) -> Ratio:
        """Per round, numerator over denominator (the two ran in the same round); their median and quartiles."""
        values = [
            field(top) / field(bottom)
            for top, bottom in zip(self.samples[numerator], self.samples[denominator], strict=True)
        ]
        low, high = _quartiles(values)
        return Ratio(statistics.median(values), low, high)

    @property
    def bytecode_ratio(self) -> Ratio:
        return self.ratio(API_BYTECODE, API_SOURCE)

    @property
    def naive_ratio(self) -> Ratio:
        return self.ratio(API_BYTECODE, NAIVE_BYTECODE)


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4)
    return low, high


def host_architecture() -> str:
    """This machine's Lambda architecture name: the bench's artifact must run here."""
    return MACHINE_ARCHITECTURES.get(platform.machine().lower(), platform.machine())


def build(directory: Path, function_id: str, python_version: str, *, bytecode: bool) -> ArtifactSize:
    """The function's artifact, built into `directory` by devtools/sam/Makefile as `sam build` runs it."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    argv = [
        "make",
        "--no-print-directory",
        "-s",
        "-f",
        str(MAKEFILE),
        f"build-{function_id}",
        f"ARTIFACTS_DIR={directory}",
        f"LAMBDA_PYTHON_VERSION={python_version}",
        f"LAMBDA_ARCHITECTURE={host_architecture()}",
        f"LAMBDA_BYTECODE={int(bytecode)}",
        f"PIP={sys.executable} -m pip",
    ]
    completed = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"building the artifact failed:\n{completed.stderr[-3000:]}")
    return artifact_size(directory, bytecode=bytecode)


def artifact_size(directory: Path, *, bytecode: bool) -> ArtifactSize:
    """Count and measure an artifact, zipping it as SAM does (deflate) into a temporary file."""
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    with tempfile.TemporaryFile() as scratch:
        with zipfile.ZipFile(scratch, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, path.relative_to(directory))
        zipped = scratch.tell()
    return ArtifactSize(
        bytecode=bytecode,
        files=len(files),
        pyc_files=sum(path.suffix == ".pyc" for path in files),
        unzipped_bytes=sum(path.stat().st_size for path in files),
        zipped_bytes=zipped,
    )


@contextmanager
def read_only_copy(
    artifact: Path, destination: Path, python: RuntimePython, *, handler: str, bytecode: bool
) -> Iterator[Path]:
    """The artifact with the entry modules for `handler`, read-only; on leaving, proof that nothing was written."""
    shutil.copytree(artifact, destination)
    modules = entry_modules(handler)
    for name, text in modules.items():
        (destination / f"{name}.py").write_text(text, encoding="utf-8")
    if bytecode:
        entries = [str(destination / f"{name}.py") for name in modules]
        subprocess.run(
            [str(python.executable), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", *entries],
            check=True,
        )
    before = _listing(destination)
    _set_modes(destination, files=0o444, directories=0o555)
    try:
        yield destination
    finally:
        _set_modes(destination, files=0o644, directories=0o755)
    written = sorted(_listing(destination) - before)
    if written:
        raise RuntimeError(f"a cold start wrote to the read-only copy {destination}: {written[:5]}")


def _listing(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _set_modes(root: Path, *, files: int, directories: int) -> None:
    for folder, subfolders, names in os.walk(root):
        for name in names:
            os.chmod(os.path.join(folder, name), files)
        for name in subfolders:
            os.chmod(os.path.join(folder, name), directories)
    root.chmod(directories)


def cold_start(
    variant: Variant,
    code_root: Path,
    config: FunctionConfig,
    python: RuntimePython,
    event: dict[str, Any],
    extra: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    expected_status: int | None = None,
) -> tuple[InvokeResult, Sample]:
    """One new execution environment of `variant` from `code_root`: INIT, then one invocation with `event`.

    `extra` is added to the function's environment; `environ` supplies the database as for the local Lambda (default:
    os.environ, then .stack/env). The answer must be the variant's status, else `expected_status` (app.toml's for the
    event), else any below 500.
    """
    variant_config = replace(config, handler=variant.handler, code_root=code_root)
    variables = {
        **lambda_environment(variant_config, region()),
        **function_environment(variant_config, environ),
        # Root writes to a read-only mode folder anyway; Lambda's read-only mount refuses, so nothing is cached.
        **({"PYTHONDONTWRITEBYTECODE": "1"} if os.geteuid() == 0 else {}),
        **(extra or {}),
    }
    environment = ExecutionEnvironment(
        variant_config, python, f"coldstart-{uuid.uuid4().hex[:8]}", variables, lambda _environment, _line: None
    )
    invocation = NextInvocation(
        request_id=str(uuid.uuid4()),
        payload=json.dumps(event).encode(),
        deadline_epoch_ms=0,
        function_arn=f"arn:aws:lambda:{region()}:{ACCOUNT_ID}:function:{config.logical_id}",
        trace_id=trace_header(sampled=False),
    )
    try:
        result = environment.invoke(invocation, config.timeout_seconds)
    finally:
        environment.close()
    marker = next((line for line in result.logs.splitlines() if line.startswith(INIT_MARKER)), "")
    status = variant.status if variant.status is not None else expected_status
    answered = result.status_code == status if status is not None else (result.status_code or 500) < 500
    if not answered or result.init_duration_ms is None or not marker:
        raise RuntimeError(
            f"{variant.name}: expected HTTP {status or 'below 500'} after the INIT marker, got {result.response!r}\n"
            f"{result.logs[-2000:]}"
        )
    began, ended = (float(value) for value in marker.removeprefix(INIT_MARKER).split())
    sample = Sample(
        init_ms=result.init_duration_ms,
        first_ms=result.duration_ms,
        startup_ms=(began - environment.started_at) * 1000,
        import_ms=(ended - began) * 1000,
    )
    return result, sample


def parse_importtime(log: str) -> tuple[ImportEntry, ...]:
    """The `-X importtime` lines of a process's output, each with the index of the line that imported it."""
    rows: list[tuple[str, float, float, int]] = []
    for line in log.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        name = fields[2].rstrip()
        depth = len(name) - len(name.lstrip())
        rows.append((name.strip(), int(fields[0]) / 1000, int(fields[1]) / 1000, depth))
    # A module's line follows those of the modules it imported, which are indented deeper.
    entries: list[ImportEntry] = []
    for index, (name, own, cumulative, depth) in enumerate(rows):
        parent = next((later for later in range(index + 1, len(rows)) if rows[later][3] < depth), None)
        entries.append(ImportEntry(name, own, cumulative, parent))
    return tuple(entries)


@dataclass(frozen=True)
class Profile:
    """Median import times (ms) per module of a few cold starts: those imported at INIT, and by the first request."""

    init: tuple[ImportEntry, ...]
    first: tuple[ImportEntry, ...]


def median_profile(runs: Sequence[Sequence[ImportEntry]]) -> tuple[ImportEntry, ...]:
    """The first run's entries (and structure) with each line's median self and cumulative times over `runs`."""
    keyed = [dict(zip(_line_keys(run), run, strict=True)) for run in runs]

    def median_of(key: tuple[str, int], field: Callable[[ImportEntry], float]) -> float:
        return statistics.median(field(run[key]) if key in run else 0.0 for run in keyed)

    return tuple(
        replace(
            entry,
            self_ms=median_of(key, lambda e: e.self_ms),
            cumulative_ms=median_of(key, lambda e: e.cumulative_ms),
        )
        for key, entry in zip(_line_keys(runs[0]), runs[0], strict=True)
    )


def _line_keys(run: Sequence[ImportEntry]) -> list[tuple[str, int]]:
    # A module caught in an import cycle has two lines: the n-th line of a module matches the n-th in another run.
    seen: Counter[str] = Counter()
    keys = []
    for entry in run:
        keys.append((entry.module, seen[entry.module]))
        seen[entry.module] += 1
    return keys


def _profiles(
    variants: Sequence[Variant],
    code_root: Path,
    config: FunctionConfig,
    python: RuntimePython,
    event: dict[str, Any],
    expected_status: int | None,
    runs: int = PROFILE_RUNS,
) -> list[Profile]:
    """Import profiles of the variants' cold starts, the variants interleaved like the timed rounds."""
    init_runs: list[list[tuple[ImportEntry, ...]]] = [[] for _ in variants]
    first_runs: list[list[tuple[ImportEntry, ...]]] = [[] for _ in variants]
    for _ in range(runs):
        for index, variant in enumerate(variants):
            result, _ = cold_start(
                variant,
                code_root,
                config,
                python,
                event,
                {"PYTHONPROFILEIMPORTTIME": "1"},
                expected_status=expected_status,
            )
            init, marker, first = result.logs.partition(INIT_MARKER)
            if not marker:
                raise RuntimeError(f"{variant.name}: no end-of-INIT marker in its output:\n{result.logs[-2000:]}")
            init_runs[index].append(parse_importtime(init))
            first_runs[index].append(parse_importtime(first))
    return [
        Profile(median_profile(init), median_profile(first)) for init, first in zip(init_runs, first_runs, strict=True)
    ]


def measure_deployed(runs: int = DEFAULT_RUNS, log: Callable[[str], None] = print) -> DeployedColdStart | str:
    """Build, copy read-only and cold-start every variant `runs` times; a reason instead when this cannot run here."""
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    probe = bench_app().probe
    if probe is None:
        return "app.toml [bench] names no read and no health request to start an environment with"
    config = probe.request.function
    python = runtime_python(config.runtime)
    if not python.matches:
        return f"no {config.runtime} to run the deployed artifact on ({python.describe()})"
    version = config.runtime.removeprefix("python")
    builds = {bytecode: BUILD_ROOT / ("bytecode" if bytecode else "no-bytecode") for bytecode in (True, False)}
    log(f"building {config.logical_id} with devtools/sam/Makefile for {config.runtime} {host_architecture()} ...")
    sizes = tuple(
        build(directory, config.logical_id, version, bytecode=bytecode) for bytecode, directory in builds.items()
    )
    event = probe.request.event()
    samples: dict[Variant, list[Sample]] = {variant: [] for variant in VARIANTS}
    with (
        tempfile.TemporaryDirectory(prefix="coldstart-") as scratch,
        read_only_copy(
            builds[True], Path(scratch) / "bytecode", python, handler=config.handler, bytecode=True
        ) as with_bytecode,
        read_only_copy(
            builds[False], Path(scratch) / "no-bytecode", python, handler=config.handler, bytecode=False
        ) as without,
    ):
        trees = {True: with_bytecode, False: without}
        log(f"deployed cold starts: {len(VARIANTS)} variants x (1 warm-up + {runs}) rounds ...")
        for round_number in range(runs + 1):
            shift = round_number % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                _, sample = cold_start(
                    variant, trees[variant.bytecode], config, python, event, expected_status=probe.status
                )
                if round_number:
                    samples[variant].append(sample)
        log("import profiles of the deployed INIT (-X importtime) ...")
        api_profile, naive_profile = _profiles(
            (API_BYTECODE, NAIVE_BYTECODE), with_bytecode, config, python, event, probe.status
        )
    return DeployedColdStart(
        handler_module=config.handler_module,
        event_name=probe.request.event_name,
        python=python,
        architecture=host_architecture(),
        runs=runs,
        samples=samples,
        sizes=sizes,
        api_profile=api_profile.init,
        naive_profile=naive_profile.init,
        first_imports=api_profile.first,
        load=(load_before, os.getloadavg()[0]),
        seconds=time.perf_counter() - started,
    )


# The report.


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def samples_table(result: DeployedColdStart) -> str:
    """Medians per variant, and each ratio of the targets side by side."""
    lines = [
        "| variant | INIT ms | runtime start ms | handler import ms | first invocation ms | INIT + first ms |",
        "|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        total = statistics.median(sample.init_ms + sample.first_ms for sample in result.samples[variant])
        cells = [result.median(variant, field) for field in (_init, _startup, _import, _first)]
        lines.append(f"| {variant.name} | {' | '.join(_ms(cell) for cell in cells)} | {_ms(total)} |")
    return "\n".join(lines)


def ratios_table(result: DeployedColdStart) -> str:
    app = result.handler_module
    rows = [
        (f"{app} INIT, bytecode / no bytecode", result.bytecode_ratio, f"≤ {BYTECODE_TARGET}x"),
        (f"{app} INIT / naive baseline INIT, both with bytecode", result.naive_ratio, f"≤ {NAIVE_TARGET}x"),
        (
            f"{app} import / naive baseline import (INIT less the runtime's start), both with bytecode",
            result.ratio(API_BYTECODE, NAIVE_BYTECODE, _import),
            "",
        ),
        (f"{app} INIT / naive baseline INIT, both without bytecode", result.ratio(API_SOURCE, NAIVE_SOURCE), ""),
        ("naive baseline INIT, bytecode / no bytecode", result.ratio(NAIVE_BYTECODE, NAIVE_SOURCE), ""),
        (f"{app} first invocation, bytecode / no bytecode", result.ratio(API_BYTECODE, API_SOURCE, _first), ""),
    ]
    lines = ["| ratio (median of the rounds' ratios, quartiles) | measured | target |", "|---|---|---|"]
    for name, ratio, target in rows:
        verdict = ""
        if target:
            limit = float(target.removeprefix("≤ ").removesuffix("x"))
            verdict = f"{target}: {'PASS' if ratio.median <= limit else 'MISS'}"
        lines.append(f"| {name} | {ratio} | {verdict or '-'} |")
    return "\n".join(lines)


def sizes_table(result: DeployedColdStart) -> str:
    lines = ["| artifact | files | .pyc | unzipped | zipped (deflate) |", "|---|---|---|---|---|"]
    for size in sorted(result.sizes, key=lambda s: s.bytecode):
        name = f"with {result.python.runtime} bytecode (now)" if size.bytecode else "without bytecode (before)"
        lines.append(
            f"| {name} | {size.files} | {size.pyc_files} | {_megabytes(size.unzipped_bytes)} | "
            f"{_megabytes(size.zipped_bytes)} |"
        )
    return "\n".join(lines)


def top_imports_table(profile: Sequence[ImportEntry], count: int = TOP_IMPORTS) -> str:
    lines = ["| module (cumulative, deployed INIT, bytecode) | cumulative ms | self ms |", "|---|---|---|"]
    # A module caught in an import cycle has two lines; the outer one is its whole import.
    largest: dict[str, ImportEntry] = {}
    for entry in profile:
        if entry.module not in largest or entry.cumulative_ms > largest[entry.module].cumulative_ms:
            largest[entry.module] = entry
    for entry in sorted(largest.values(), key=lambda e: -e.cumulative_ms)[:count]:
        lines.append(f"| {entry.module} | {_ms(entry.cumulative_ms)} | {_ms(entry.self_ms)} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Floor:
    """The app's INIT profile split by the naive baseline's: what both import, and what only the app does."""

    naive_ms: float
    api_ms: float
    shared_ms: float
    naive_only_ms: float
    extra: tuple[tuple[str, float], ...]
    engine_ms: float


def floor(api: Sequence[ImportEntry], naive: Sequence[ImportEntry]) -> Floor:
    """Self times summed: modules both import, modules only the app imports (grouped), the engine's subtree."""
    naive_names = {entry.module for entry in naive}
    api_names = {entry.module for entry in api}
    groups: dict[str, float] = {}
    for entry in api:
        if entry.module not in naive_names:
            group = ".".join(entry.module.split(".")[:2])
            groups[group] = groups.get(group, 0.0) + entry.self_ms
    engine = [
        entry
        for index, entry in enumerate(api)
        if entry.module in ENGINE_MODULES and not _has_ancestor_in(api, index, ENGINE_MODULES)
    ]
    return Floor(
        naive_ms=sum(entry.self_ms for entry in naive),
        api_ms=sum(entry.self_ms for entry in api),
        shared_ms=sum(entry.self_ms for entry in api if entry.module in naive_names),
        naive_only_ms=sum(entry.self_ms for entry in naive if entry.module not in api_names),
        extra=tuple(sorted(groups.items(), key=lambda group: -group[1])),
        engine_ms=sum(entry.cumulative_ms for entry in engine),
    )


def _has_ancestor_in(profile: Sequence[ImportEntry], index: int, names: frozenset[str]) -> bool:
    parent = profile[index].parent
    while parent is not None:
        if profile[parent].module in names:
            return True
        parent = profile[parent].parent
    return False


def floor_table(found: Floor, app: str, count: int = 8) -> str:
    lines = [f"| {app}'s deployed INIT, by module (self ms, medians of {PROFILE_RUNS} runs) | ms |", "|---|---|"]
    lines.append(f"| modules the naive baseline imports too | {_ms(found.shared_ms)} |")
    for name, ms in found.extra[:count]:
        lines.append(f"| only {app}: {name} | {_ms(ms)} |")
    rest = sum((ms for _, ms in found.extra[count:]), 0.0)
    lines.append(f"| only {app}: {len(found.extra[count:])} other groups | {_ms(rest)} |")
    lines.append(f"| total (naive baseline's own run: {_ms(found.naive_ms)}) | {_ms(found.api_ms)} |")
    return "\n".join(lines)


def first_imports_table(entries: Sequence[ImportEntry], count: int = 8) -> str:
    """The modules the first request imports itself (lazily), largest cumulative first."""
    top = [entry for entry in entries if entry.parent is None]
    lines = ["| imported by the first request (cumulative, bytecode) | ms |", "|---|---|"]
    for entry in sorted(top, key=lambda e: -e.cumulative_ms)[:count]:
        lines.append(f"| {entry.module} | {_ms(entry.cumulative_ms)} |")
    return "\n".join(lines)


def section(result: DeployedColdStart) -> str:
    """The Markdown of the deployed cold start for bench/results.md."""
    found = floor(result.api_profile, result.naive_profile)
    app = result.handler_module
    shared = found.shared_ms / found.naive_ms
    first_ms = sum((entry.self_ms for entry in result.first_imports), 0.0)
    cpus = os.cpu_count()
    return "\n".join(
        [
            f"The artifact of {app}'s function, built by devtools/sam/Makefile's steps for {result.python.runtime} on "
            f"this machine ({result.architecture}), with and without its bytecode, each copied to a read-only folder"
            + (
                " (the bench runs as root, whom folder modes do not stop: `PYTHONDONTWRITEBYTECODE=1` plays Lambda's "
                "read-only mount, and after the runs the bench checks that nothing was written)"
                if os.geteuid() == 0
                else ""
            )
            + f"; each sample is a new execution environment: `python -m awslambdaric <handler>` on Python "
            f"{result.python.version} ({_relative(result.python.executable)}, whose packages play Lambda's "
            "/var/runtime: awslambdaric, boto3) polling a local Runtime API, as Lambda's Python runtime starts a "
            "function, with the artifact first on its path. "
            "INIT = process start until the runtime client first asks for an event: the runtime's start (interpreter "
            "and runtime client, until the handler module begins) and the handler module's import (clocked by the "
            "module itself); "
            f"first invocation = `{result.event_name}` (app.toml [bench]) handed out until answered ({app}: engine, "
            f"new TLS + SCRAM connection to the local stack, its statements; the baseline answers a constant). "
            f"*{app}* as deployed (the sample's app is on the ORM: sqlalchemy.orm is part of its INIT as of the "
            "baseline's); "
            "*naive baseline*: "
            "`import " + ", ".join(NAIVE_BASELINE) + "` and a constant handler, in the same "
            f"artifact. {result.runs} rounds after a discarded warm-up round, the four variants interleaved in a "
            "rotating order; ms are medians, a ratio is the median of the rounds' ratios (quartiles in brackets). "
            f"Machine load (1-minute load average on {cpus} CPUs): {result.load[0]:.1f} at the start, "
            f"{result.load[1]:.1f} at the end; this part took {result.seconds:.0f} s.",
            "",
            samples_table(result),
            "",
            ratios_table(result),
            "",
            "Artifact size (what `sam build` leaves and `sam deploy` zips):",
            "",
            sizes_table(result),
            "",
            f"The {TOP_IMPORTS} largest cumulative imports of the deployed INIT ({app}, bytecode; per-module "
            f"medians of {PROFILE_RUNS} runs with `-X importtime`, which inflates every import alike):",
            "",
            top_imports_table(result.api_profile),
            "",
            f"**The floor.** {app}'s INIT beside the naive baseline's, in the same profiles:",
            "",
            floor_table(found, app),
            "",
            f"{app}'s profile is {found.api_ms / found.naive_ms:.2f}x the baseline's. Every module the baseline "
            f"imports, {app} imports too (those it does not come to {_ms(found.naive_only_ms)} ms), and in "
            f"{app}'s profile they alone are {shared:.2f}x the baseline's total: "
            + (
                "with none of its own additions it would still be above 0.9x, which needs "
                f"{_ms(found.shared_ms - NAIVE_TARGET * found.naive_ms)} ms less of the baseline's own imports "
                "(FastAPI with Starlette and pydantic, SQLAlchemy with its ORM, Powertools, Mangum, pg8000), each of "
                "which the app uses. "
                if shared > NAIVE_TARGET
                else "its own additions (the table) are what stands between it and 0.9x. "
            )
            + "Of those additions, pydantic.v1 is FastAPI's (it imports it to reject v1 models while building the "
            f"routes) and {app}'s own time is the app built at INIT; the engine's connection modules (the kit's "
            "dialects with pg8000 and SQLAlchemy's postgresql dialect package under them) take "
            f"{_ms(found.engine_ms)} ms: deferring them to the first request would move that time into the first "
            "invocation, not save it (and take it out of a SnapStart snapshot), so they stay at INIT, where nothing "
            "connects.",
            "",
            f"What the first request imports itself ({len(result.first_imports)} modules, {_ms(first_ms)} ms of "
            "self time in the same runs):",
            "",
            first_imports_table(result.first_imports),
        ]
    )
