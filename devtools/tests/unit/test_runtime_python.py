"""devtools.runtime_python: the interpreter a function runs on, and what the tools say about it."""

from __future__ import annotations

import sys
from pathlib import Path

from devtools.runtime_python import runtime_python


def _fake_interpreter(path: Path, version: str) -> Path:
    """A stand-in 'python' that answers the probe with a version and an awslambdaric release."""
    path.parent.mkdir(parents=True)
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' {version} 'awslambdaric 9.9.9'\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_the_runtimes_venv_is_used_when_its_python_has_that_version(tmp_path: Path) -> None:
    python = _fake_interpreter(tmp_path / ".venv-3.99" / "bin" / "python", "3.99.1")
    chosen = runtime_python("python3.99", root=tmp_path)
    assert (chosen.executable, chosen.version, chosen.matches) == (python, "3.99.1", True)
    assert chosen.describe() == "awslambdaric 9.9.9 on Python 3.99.1 (" + str(python) + "), as python3.99 in Lambda"


def test_without_that_venv_the_fallback_runs_and_the_tools_say_so(tmp_path: Path) -> None:
    chosen = runtime_python("python3.99", root=tmp_path)
    assert chosen.executable == Path(sys.executable)
    assert chosen.version == ".".join(map(str, sys.version_info[:3]))
    assert not chosen.matches
    assert "NOT python3.99: no .venv-3.99; `devtools/bootstrap.sh runtime-venv 3.99`" in chosen.describe()


def test_a_venv_of_another_version_does_not_count(tmp_path: Path) -> None:
    _fake_interpreter(tmp_path / ".venv-3.99" / "bin" / "python", "3.98.0")
    assert not runtime_python("python3.99", root=tmp_path).matches


def test_the_fallback_matches_when_it_is_the_runtimes_version(tmp_path: Path) -> None:
    runtime = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    chosen = runtime_python(runtime, root=tmp_path)
    assert (chosen.executable, chosen.matches) == (Path(sys.executable), True)


def test_a_runtime_that_is_not_python_is_named(tmp_path: Path) -> None:
    chosen = runtime_python("nodejs22.x", root=tmp_path)
    assert not chosen.matches
    assert "nodejs22.x is not a Python runtime" in chosen.describe()
