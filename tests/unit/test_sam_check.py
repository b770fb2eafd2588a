"""tools.sam_check's artifact inspection on hand-made artifacts (the real builds run in `make sam-check`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import sam_check
from tools.sam_check import CheckFailedError, Target, check_artifact, default_target

ARM_313 = Target(python_version="3.13", architecture="arm64", importable=False)


@pytest.fixture
def artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A well-formed ApiFunction artifact for python3.13/arm64 under a temporary build root."""
    monkeypatch.setattr(sam_check, "BUILD_ROOT", tmp_path)
    root = ARM_313.build_dir / "ApiFunction"
    for package in ("handlers", "lib", "pydantic_core"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("", encoding="utf-8")
    (root / "pydantic_core" / "_pydantic_core.cpython-313-aarch64-linux-gnu.so").write_bytes(b"")
    return root


def test_a_runtime_only_artifact_for_the_right_platform_passes(artifact: Path) -> None:
    check_artifact(ARM_313, "ApiFunction")


@pytest.mark.parametrize("leaked", ["tests", "events", "tools", "template.yaml", ".stack", "awslambdaric"])
def test_project_files_in_the_artifact_fail_the_check(artifact: Path, leaked: str) -> None:
    (artifact / leaked).mkdir()
    with pytest.raises(CheckFailedError, match=f"must not contain \\['{leaked}'\\]"):
        check_artifact(ARM_313, "ApiFunction")


def test_missing_runtime_code_fails_the_check(artifact: Path) -> None:
    (artifact / "lib" / "__init__.py").unlink()
    (artifact / "lib").rmdir()
    with pytest.raises(CheckFailedError, match=r"missing \['lib'\]"):
        check_artifact(ARM_313, "ApiFunction")


def test_wheels_for_another_platform_fail_the_check(artifact: Path) -> None:
    so = artifact / "pydantic_core" / "_pydantic_core.cpython-313-aarch64-linux-gnu.so"
    so.rename(so.with_name("_pydantic_core.cpython-311-x86_64-linux-gnu.so"))
    with pytest.raises(CheckFailedError, match="not built for cpython-313-aarch64-linux-gnu"):
        check_artifact(ARM_313, "ApiFunction")


def test_stray_bytecode_fails_the_check(artifact: Path) -> None:
    (artifact / "handlers" / "__pycache__").mkdir()
    (artifact / "handlers" / "__pycache__" / "api.cpython-311.pyc").write_bytes(b"")
    with pytest.raises(CheckFailedError, match="stray bytecode"):
        check_artifact(ARM_313, "ApiFunction")


def test_the_deploy_target_is_the_templates_default_runtime_and_architecture() -> None:
    target = default_target()
    assert (target.runtime, target.architecture, target.importable) == ("python3.13", "arm64", False)
