"""The SAM checks CI runs: cfn-lint, `sam validate` (lint, translation), `sam build`, and every artifact inspected.

    python -m devtools.sam_check [--sam-bin .venv-sam/bin]      (make sam-check)

Two builds: one for this machine's Python and architecture, whose artifacts must import their handlers in a fresh
interpreter that sees nothing but the artifact and the standard library; and one for the template's default runtime
and architecture (what `sam deploy` ships), whose artifacts must hold compiled wheels for that platform. Every artifact
must hold handlers/ and lib/ and nothing of tests/, events/, devtools/, the project's other files or the local Lambda's
runtime client (awslambdaric), and bytecode for its runtime's Python beside every module: unchecked-hash, written by
that version (its magic number), and none for another version. Every nested application with a local template
(observability.yaml) is linted too, and must come out of the build as <LogicalId>/template.yaml with the same
resources, the built template pointing at it: what `sam deploy` then uploads.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.function_config import function_config
from devtools.paths import ROOT
from devtools.sam_template import TEMPLATE_PATH, Resolver, function_ids, load_template, nested_applications

BUILD_ROOT = ROOT / ".aws-sam" / "check"
INFRA_TEMPLATE_PATH = ROOT / "infra" / "github-oidc.yaml"
REQUIRED_ENTRIES = ("handlers", "lib")
# Project files that must never reach the deploy artifact.
FORBIDDEN_ENTRIES = (
    "tests",
    "events",
    "devtools",
    "docs",
    "template.yaml",
    "samconfig.toml",
    "env.json",
    "Makefile",
    "pyproject.toml",
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-sam.txt",
    # The local Lambda's dev dependencies: Lambda brings its own runtime client and SnapStart hooks module.
    "awslambdaric",
    "snapshot_restore_py.py",
    "httpx",
    "README.md",
    # Migrations are tooling (make migrate, the deploy workflow), never run by a function.
    "migrations",
    "alembic.ini",
    "alembic",
    "infra",
    ".stack",
    ".venv",
    ".venv-sam",
    ".git",
)
MACHINE_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
# PEP 552 flags of an unchecked hash-based .pyc: valid whatever the sources' timestamps, never re-validated.
UNCHECKED_HASH_FLAGS = 0b01
# The wheel every build must contain compiled for its target: it proves pip resolved the right platform.
COMPILED_PROBE = "pydantic_core"
SO_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
# An ARN-shaped value so settings code sees the deployed configuration; nothing may fetch it at import time.
PLACEHOLDER_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sam-check-placeholder-AbCdEf"  # noqa: S105 - an ARN, not a secret


class CheckFailedError(RuntimeError):
    """A check failed; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """A runtime/architecture combination to build for."""

    python_version: str
    architecture: str
    importable: bool

    @property
    def runtime(self) -> str:
        return f"python{self.python_version}"

    @property
    def build_dir(self) -> Path:
        return BUILD_ROOT / f"{self.runtime}-{self.architecture}"

    @property
    def cache_tag(self) -> str:
        """The tag of this runtime's bytecode files (cpython-313)."""
        return f"cpython-{self.python_version.replace('.', '')}"


def host_target() -> Target:
    """This interpreter's Python version and the machine's architecture: artifacts built for it can be imported."""
    machine = platform.machine().lower()
    if machine not in MACHINE_ARCHITECTURES:
        raise CheckFailedError(f"unsupported machine architecture {machine!r}")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Target(python_version=version, architecture=MACHINE_ARCHITECTURES[machine], importable=True)


def default_target(template_path: Path = TEMPLATE_PATH) -> Target:
    """The template's default PythonRuntime and Architecture: what a plain `sam build && sam deploy` ships."""
    parameters = Resolver(load_template(template_path)).parameters
    version = parameters["PythonRuntime"].removeprefix("python")
    return Target(python_version=version, architecture=parameters["Architecture"], importable=False)


def _step(title: str, argv: Sequence[str], env: Mapping[str, str]) -> float:
    print(f"--- {title}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=ROOT, env=dict(env), check=False)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise CheckFailedError(f"{title} failed (exit {completed.returncode})")
    print(f"--- {title}: ok in {elapsed:.1f} s", flush=True)
    return elapsed


def sam_environment() -> dict[str, str]:
    """Offline, quiet SAM CLI: no telemetry, no update check, a region without an AWS profile."""
    env = dict(os.environ)
    env.update({"SAM_CLI_TELEMETRY": "0", "SAM_CLI_DISABLE_UPDATE_CHECK": "1"})
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env.setdefault("AWS_REGION", env["AWS_DEFAULT_REGION"])
    return env


def build(target: Target, sam: Path, env: Mapping[str, str]) -> float:
    """`sam build` for one target into its own directory under .aws-sam/check/."""
    if target.build_dir.exists():
        shutil.rmtree(target.build_dir)
    build_env = {**env, "LAMBDA_PYTHON_VERSION": target.python_version, "LAMBDA_ARCHITECTURE": target.architecture}
    argv = [
        str(sam),
        "build",
        "--build-in-source",
        "--build-dir",
        str(target.build_dir),
        "--parameter-overrides",
        f"PythonRuntime={target.runtime}",
        f"Architecture={target.architecture}",
    ]
    return _step(f"sam build ({target.runtime}, {target.architecture})", argv, build_env)


def check_artifact(target: Target, function_id: str, *, magic: bytes | None = None) -> None:
    """The artifact of one function holds runtime code only, for the right platform, and imports its handler.

    `magic`: the bytecode magic number of the target's Python, when known; every .pyc must carry it.
    """
    artifact = target.build_dir / function_id
    if not artifact.is_dir():
        raise CheckFailedError(f"{function_id}: no artifact at {artifact}")
    entries = {path.name for path in artifact.iterdir()}
    missing = [name for name in REQUIRED_ENTRIES if name not in entries]
    leaked = sorted(entries.intersection(FORBIDDEN_ENTRIES))
    if missing or leaked:
        raise CheckFailedError(
            f"{function_id} ({target.runtime}, {target.architecture}): missing {missing}, must not contain {leaked}"
        )
    _check_compiled_wheels(target, function_id, artifact)
    _check_bytecode(target, function_id, artifact, magic)
    if target.importable:
        _check_import(target, function_id, artifact)
    print(f"--- artifact {function_id} ({target.runtime}, {target.architecture}): ok", flush=True)


def check_nested_templates(target: Target, template_path: Path = TEMPLATE_PATH) -> int:
    """The build holds every local nested template as <LogicalId>/template.yaml, and its template points there."""
    built_template = target.build_dir / "template.yaml"
    built = load_template(built_template)
    applications = nested_applications(load_template(template_path), template_path)
    for logical_id, application in applications.items():
        location = built["Resources"].get(logical_id, {}).get("Properties", {}).get("Location")
        if location != f"{logical_id}/template.yaml":
            raise CheckFailedError(f"{logical_id}: the built template's Location is {location!r}, not the built copy")
        if not (built_template.parent / location).is_file():
            raise CheckFailedError(f"{logical_id}: the build has no {location}")
        child = load_template(built_template.parent / location)
        if set(child["Resources"]) != set(application.template["Resources"]):
            raise CheckFailedError(
                f"{logical_id}: the built {location} has resources {sorted(child['Resources'])}, "
                f"{application.path.name} has {sorted(application.template['Resources'])}"
            )
        print(f"--- nested {logical_id} ({location}, {len(child['Resources'])} resources): ok", flush=True)
    return len(applications)


def _check_bytecode(target: Target, function_id: str, artifact: Path, magic: bytes | None) -> None:
    """Beside every module, its target-version bytecode (unchecked-hash); no other .pyc anywhere."""
    sources = [path for path in artifact.rglob("*.py") if "__pycache__" not in path.parts]
    expected = {path.parent / "__pycache__" / f"{path.stem}.{target.cache_tag}.pyc": path for path in sources}
    found = set(artifact.rglob("*.pyc"))
    without = sorted(str(source.relative_to(artifact)) for pyc, source in expected.items() if pyc not in found)
    other = sorted(str(path.relative_to(artifact)) for path in found - expected.keys())
    headers = {path: _header(path) for path in found & expected.keys()}
    checked = sorted(
        str(path.relative_to(artifact))
        for path, header in headers.items()
        if int.from_bytes(header[4:8], "little") != UNCHECKED_HASH_FLAGS
    )
    magics = {header[:4] for header in headers.values()}
    wrong_magic = len(magics) > 1 or (magic is not None and bool(magics - {magic}))
    if without or other or checked or wrong_magic:
        raise CheckFailedError(
            f"{function_id} ({target.runtime}, {target.architecture}): bytecode: {len(without)} module(s) without "
            f"{target.cache_tag} bytecode {without[:3]}, {len(other)} other .pyc file(s) {other[:3]}, "
            f"{len(checked)} not unchecked-hash {checked[:3]}, magic numbers {sorted(m.hex() for m in magics)}"
            + (f" (want {magic.hex()})" if magic is not None else "")
        )


def _header(pyc: Path) -> bytes:
    with pyc.open("rb") as file:
        return file.read(8)


def bytecode_magic(python_version: str) -> bytes | None:
    """The bytecode magic number of a Python version: this interpreter's, or a pythonX.Y found as the build finds it."""
    if python_version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return importlib.util.MAGIC_NUMBER
    found = subprocess.run(
        [str(ROOT / "devtools" / "bootstrap.sh"), "python", python_version], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        return None
    probe = "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"
    completed = subprocess.run(
        [found.stdout.strip(), "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    return bytes.fromhex(completed.stdout) if completed.returncode == 0 else None


def _check_compiled_wheels(target: Target, function_id: str, artifact: Path) -> None:
    tag = f"cpython-{target.python_version.replace('.', '')}-{SO_ARCH[target.architecture]}-linux-gnu"
    extensions = [path.name for path in (artifact / COMPILED_PROBE).glob("*.so")]
    if not any(tag in name for name in extensions):
        raise CheckFailedError(f"{function_id}: {COMPILED_PROBE} is not built for {tag} (found {extensions})")


def _check_import(target: Target, function_id: str, artifact: Path) -> None:
    config = function_config(
        function_id,
        parameters={"PythonRuntime": target.runtime, "Architecture": target.architecture},
    )
    module_name, _, attribute = config.handler.rpartition(".")
    # -I -S: no user site, no site-packages, no PYTHONPATH, so the artifact is all there is on sys.path;
    # -B: leave the artifact as built. SourceLoader.source_to_code runs only for a module without usable bytecode.
    probe = (
        "import importlib, importlib._bootstrap_external as external, sys\n"
        "compiled = []\n"
        "to_code = external.SourceLoader.source_to_code\n"
        "def counting(self, data, path, **options):\n"
        "    compiled.append(path)\n"
        "    return to_code(self, data, path, **options)\n"
        "external.SourceLoader.source_to_code = counting\n"
        f"sys.path.insert(0, {str(artifact)!r})\n"
        f"module = importlib.import_module({module_name!r})\n"
        f"assert callable(getattr(module, {attribute!r})), 'handler is not callable'\n"
        "outside = sorted({m.__file__ for m in list(sys.modules.values())\n"
        "    if getattr(m, '__file__', None) and 'site-packages' in m.__file__})\n"
        "assert not outside, f'imported from outside the artifact: {outside[:3]}'\n"
        f"mine = [path for path in compiled if path.startswith({str(artifact)!r})]\n"
        "assert not mine, f'compiled from source at import (no usable bytecode): {len(mine)}, {mine[:3]}'\n"
    )
    env = {
        **config.environment,
        "DATABASE_SECRET_ARN": PLACEHOLDER_SECRET_ARN,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function_id,
        "LANG": "C.UTF-8",
    }
    completed = subprocess.run(
        [sys.executable, "-B", "-I", "-S", "-c", probe],
        cwd=artifact,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0:
        raise CheckFailedError(
            f"{function_id}: importing {config.handler} from the artifact alone failed:\n{completed.stderr.strip()}"
        )


def run(sam_bin: Path, *, include_default_target: bool = True) -> None:
    """Every check, in order; raises CheckFailedError at the first failure."""
    env = sam_environment()
    started = time.monotonic()
    template = str(TEMPLATE_PATH.relative_to(ROOT))
    # The nested templates (observability.yaml) and the deploy roles' template (infra/github-oidc.yaml) are plain
    # CloudFormation: cfn-lint only; `sam validate` reads template.yaml.
    nested = [str(app.path.relative_to(ROOT)) for app in nested_applications(load_template()).values()]
    templates = [template, *nested, str(INFRA_TEMPLATE_PATH.relative_to(ROOT))]
    _step("cfn-lint", [str(sam_bin / "cfn-lint"), "--include-checks", "I", "--", *templates], env)
    _step("sam validate --lint", [str(sam_bin / "sam"), "validate", "--lint"], env)
    # cfn-lint checks SAM's schema only; this is SAM's own transform, after the language extensions as in
    # CloudFormation (samconfig.toml's "translate" environment: lint off, --language-extensions on).
    _step("sam validate (translation)", [str(sam_bin / "sam"), "validate", "--config-env", "translate"], env)
    functions = function_ids(load_template())
    host, default = host_target(), default_target()
    targets = [host]
    if include_default_target and (default.python_version, default.architecture) != (
        host.python_version,
        host.architecture,
    ):
        targets.append(default)
    for target in targets:
        build(target, sam_bin / "sam", env)
        magic = bytecode_magic(target.python_version)
        if magic is None:
            raise CheckFailedError(f"no python{target.python_version} to read its bytecode magic number from")
        for function_id in functions:
            check_artifact(target, function_id, magic=magic)
        nested_count = check_nested_templates(target)
    print(
        f"sam-check ok: template lint + validate, {len(targets)} build(s), "
        f"{len(targets) * len(functions)} artifact(s) and {len(targets) * nested_count} nested template(s) checked "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.sam_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam-bin", type=Path, default=ROOT / ".venv-sam" / "bin", help="where sam and cfn-lint are")
    parser.add_argument(
        "--host-only", action="store_true", help="skip the build for the template's default runtime/architecture"
    )
    args = parser.parse_args(argv)
    for tool in ("sam", "cfn-lint"):
        if not (args.sam_bin / tool).exists():
            print(f"sam-check: {args.sam_bin / tool} not found; run `make sam-venv`", file=sys.stderr)
            return 2
    try:
        run(args.sam_bin, include_default_target=not args.host_only)
    except CheckFailedError as exc:
        print(f"sam-check FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
