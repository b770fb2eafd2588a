"""devtools.function_code: a local run uses the sam build artifact only when it is current and runs here."""

from __future__ import annotations

import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from devtools.function_code import function_code
from devtools.function_config import FunctionConfig
from devtools.runtime_python import RuntimePython

PYTHON = RuntimePython(Path(sys.executable), "3.13.0", "python3.13", matches=True)
TAG = f"cpython-313-{platform.machine()}-linux-gnu"


@pytest.fixture
def config(tmp_path: Path) -> FunctionConfig:
    """A project with handlers/, lib/ and requirements.txt, and a current artifact of it for Python 3.13 here."""
    source = tmp_path / "project"
    for relative in ("handlers/__init__.py", "handlers/api.py", "lib/__init__.py", "lib/kit/engine.py"):
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_text(f"# {relative}\n", encoding="utf-8")
    (source / "lib" / "__pycache__").mkdir()
    (source / "lib" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"dev bytecode")
    (source / "requirements.txt").write_text("# pins\nSQLAlchemy==2.1.9\npython-dateutil==2.9.0.post0\n", "utf-8")
    artifact = source / ".aws-sam" / "build" / "ApiFunction"
    for name in ("handlers", "lib"):
        shutil.copytree(source / name, artifact / name, ignore=shutil.ignore_patterns("__pycache__"))
    (artifact / "handlers" / "__pycache__").mkdir()
    (artifact / "handlers" / "__pycache__" / "api.cpython-313.pyc").write_bytes(b"")
    for dist_info in ("sqlalchemy-2.1.9.dist-info", "python_dateutil-2.9.0.post0.dist-info"):
        (artifact / dist_info).mkdir()
    (artifact / "pydantic_core").mkdir()
    (artifact / "pydantic_core" / f"_pydantic_core.{TAG}.so").write_bytes(b"")
    return FunctionConfig("ApiFunction", "handlers.api.handler", "python3.13", 25, 512, {}, code_root=source)


def _artifact(config: FunctionConfig) -> Path:
    return config.code_root / ".aws-sam" / "build" / "ApiFunction"


def test_a_current_artifact_built_for_this_python_is_what_runs(config: FunctionConfig) -> None:
    code = function_code(config, PYTHON)
    assert (code.root, code.artifact) == (_artifact(config), True)
    assert code.describe() == (
        "code: the sam build artifact (.aws-sam/build/ApiFunction: cpython-313 bytecode, "
        "the source tree's handlers/, lib/ and pins)"
    )


def test_without_an_artifact_the_source_tree_runs_and_says_how_to_build_one(config: FunctionConfig) -> None:
    shutil.rmtree(config.code_root / ".aws-sam")
    code = function_code(config, PYTHON)
    assert (code.root, code.artifact) == (config.code_root, False)
    assert code.describe().startswith("code: the source tree (no artifact in .aws-sam/build/ApiFunction; ")
    assert "`make sam-build SAM_ARCHITECTURE=" in code.describe()


def test_an_artifact_for_another_python_or_machine_is_not_run(config: FunctionConfig) -> None:
    so = _artifact(config) / "pydantic_core" / f"_pydantic_core.{TAG}.so"
    so.rename(so.with_name("_pydantic_core.cpython-313-s390x-linux-gnu.so"))
    code = function_code(config, PYTHON)
    assert not code.artifact
    assert "is not built for Python 3.13.0" in code.reason
    assert not function_code(config, replace(PYTHON, version="3.12.4")).artifact


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda root: (root / "lib" / "kit" / "engine.py").write_text("# edited\n"), "lib/kit/engine.py differs"),
        (lambda root: (root / "lib" / "new.py").write_text(""), "lib/new.py is not in it"),
        (lambda root: (root / "handlers" / "api.py").unlink(), "it has handlers/api.py, the source tree does not"),
        (
            lambda root: (root / "requirements.txt").write_text("SQLAlchemy==2.1.10\n"),
            "SQLAlchemy==2.1.10 (requirements.txt) is not installed in it",
        ),
    ],
)
def test_an_artifact_that_differs_from_the_source_tree_is_not_run(
    config: FunctionConfig, change: Callable[[Path], object], reason: str
) -> None:
    change(config.code_root)
    code = function_code(config, PYTHON)
    assert (code.root, code.artifact) == (config.code_root, False)
    assert f"is out of date: {reason}" in code.reason
