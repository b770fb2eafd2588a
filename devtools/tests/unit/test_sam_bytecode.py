"""devtools/sam/compile_bytecode.sh, the build step shipping bytecode: right version, unchecked-hash, or a clear no."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.paths import ROOT
from devtools.sam_check import UNCHECKED_HASH_FLAGS

SCRIPT = ROOT / "devtools" / "sam" / "compile_bytecode.sh"
HOST_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
HOST_TAG = sys.implementation.cache_tag


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """Sources as pip and the Makefile leave them, with a wheel's stray bytecode of another version."""
    root = tmp_path / "ApiFunction"
    (root / "handlers").mkdir(parents=True)
    (root / "handlers" / "__init__.py").write_text("", encoding="utf-8")
    (root / "handlers" / "api.py").write_text("def handler(event, context):\n    return event\n", encoding="utf-8")
    (root / "handlers" / "__pycache__").mkdir()
    (root / "handlers" / "__pycache__" / "api.cpython-299.pyc").write_bytes(b"stale")
    return root


def _run(artifact: Path, version: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(artifact.parent), "PYENV_ROOT": str(artifact.parent / "pyenv")}
    return subprocess.run(
        [str(SCRIPT), str(artifact), version], env={**env, **environ}, capture_output=True, text=True, check=False
    )


def test_every_module_gets_unchecked_hash_bytecode_of_the_runtime_version_and_nothing_else(artifact: Path) -> None:
    completed = _run(artifact, HOST_VERSION, LAMBDA_PYTHON=sys.executable)
    assert completed.returncode == 0, completed.stderr
    assert f"bytecode: {HOST_TAG} (unchecked-hash)" in completed.stdout
    assert sorted(p.name for p in artifact.rglob("*.pyc")) == [f"__init__.{HOST_TAG}.pyc", f"api.{HOST_TAG}.pyc"]
    data = (artifact / "handlers" / "__pycache__" / f"api.{HOST_TAG}.pyc").read_bytes()
    assert int.from_bytes(data[4:8], "little") == UNCHECKED_HASH_FLAGS
    # The source path recorded is Lambda's task root, not the build folder: the same build from anywhere.
    assert marshal.loads(data[16:]).co_filename == "/var/task/handlers/api.py"  # noqa: S302 - our own build output


def test_without_an_interpreter_of_the_runtime_version_the_build_fails_naming_the_fixes(artifact: Path) -> None:
    completed = _run(artifact, "3.99")
    assert completed.returncode == 1
    assert "no python3.99 on this machine" in completed.stderr
    for fix in ("pyenv install 3.99", "LAMBDA_PYTHON=", "sam build --use-container", "LAMBDA_BYTECODE=0"):
        assert fix in completed.stderr
    assert not list(artifact.rglob("*.pyc"))


def test_an_interpreter_of_another_version_is_refused(artifact: Path) -> None:
    completed = _run(artifact, "3.99", LAMBDA_PYTHON=sys.executable)
    assert completed.returncode == 1
    assert "not a final CPython 3.99 release" in completed.stderr
    assert not list(artifact.rglob("*.pyc"))


def test_opting_out_builds_without_any_bytecode_and_says_so(artifact: Path) -> None:
    completed = _run(artifact, "3.99", LAMBDA_BYTECODE="0")
    assert completed.returncode == 0
    assert "WARNING: LAMBDA_BYTECODE=0" in completed.stderr
    assert not list(artifact.rglob("*.pyc"))
