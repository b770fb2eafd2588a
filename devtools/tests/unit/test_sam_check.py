"""devtools.sam_check's artifact inspection on hand-made artifacts (the real builds run in `make sam-check`)."""

from __future__ import annotations

import importlib.util
import py_compile
import shutil
import sys
from pathlib import Path

import pytest

from devtools import sam_check
from devtools.paths import ROOT
from devtools.sam_check import (
    CheckFailedError,
    Target,
    bytecode_magic,
    check_artifact,
    check_nested_templates,
    default_target,
)

ARM_313 = Target(python_version="3.13", architecture="arm64", importable=False)
MODULES = ("handlers/__init__.py", "handlers/api.py", "lib/__init__.py", "pydantic_core/__init__.py")


def _compile(source: Path, tag: str = "cpython-313", *, mode: str = "UNCHECKED_HASH") -> Path:
    """Bytecode for `source` as compileall writes it, under the given tag (this interpreter writes the contents)."""
    pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
    py_compile.compile(
        str(source), cfile=str(pyc), doraise=True, invalidation_mode=py_compile.PycInvalidationMode[mode]
    )
    return pyc


@pytest.fixture
def artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A well-formed ApiFunction artifact for python3.13/arm64 under a temporary build root, bytecode included."""
    monkeypatch.setattr(sam_check, "BUILD_ROOT", tmp_path)
    root = ARM_313.build_dir / "ApiFunction"
    for module in MODULES:
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text("VALUE = 1\n", encoding="utf-8")
        _compile(root / module)
    (root / "pydantic_core" / "_pydantic_core.cpython-313-aarch64-linux-gnu.so").write_bytes(b"")
    return root


def test_a_runtime_only_artifact_for_the_right_platform_passes(artifact: Path) -> None:
    check_artifact(ARM_313, "ApiFunction")


@pytest.mark.parametrize("leaked", ["tests", "events", "devtools", "template.yaml", ".stack", "awslambdaric"])
def test_project_files_in_the_artifact_fail_the_check(artifact: Path, leaked: str) -> None:
    (artifact / leaked).mkdir()
    with pytest.raises(CheckFailedError, match=f"must not contain \\['{leaked}'\\]"):
        check_artifact(ARM_313, "ApiFunction")


def test_missing_runtime_code_fails_the_check(artifact: Path) -> None:
    shutil.rmtree(artifact / "lib")
    with pytest.raises(CheckFailedError, match=r"missing \['lib'\]"):
        check_artifact(ARM_313, "ApiFunction")


def test_wheels_for_another_platform_fail_the_check(artifact: Path) -> None:
    so = artifact / "pydantic_core" / "_pydantic_core.cpython-313-aarch64-linux-gnu.so"
    so.rename(so.with_name("_pydantic_core.cpython-311-x86_64-linux-gnu.so"))
    with pytest.raises(CheckFailedError, match="not built for cpython-313-aarch64-linux-gnu"):
        check_artifact(ARM_313, "ApiFunction")


def test_bytecode_of_another_python_version_fails_the_check(artifact: Path) -> None:
    _compile(artifact / "handlers" / "api.py", "cpython-311")
    with pytest.raises(
        CheckFailedError, match=r"1 other \.pyc file\(s\) \['handlers/__pycache__/api.cpython-311.pyc'\]"
    ):
        check_artifact(ARM_313, "ApiFunction")


def test_a_module_without_bytecode_for_the_target_version_fails_the_check(artifact: Path) -> None:
    (artifact / "lib" / "__pycache__" / "__init__.cpython-313.pyc").unlink()
    with pytest.raises(CheckFailedError, match=r"1 module\(s\) without cpython-313 bytecode \['lib/__init__.py'\]"):
        check_artifact(ARM_313, "ApiFunction")


def test_an_artifact_without_any_bytecode_fails_the_check(artifact: Path) -> None:
    for pyc in artifact.rglob("*.pyc"):
        pyc.unlink()
    with pytest.raises(CheckFailedError, match=f"{len(MODULES)} module\\(s\\) without cpython-313 bytecode"):
        check_artifact(ARM_313, "ApiFunction")


@pytest.mark.parametrize("mode", ["TIMESTAMP", "CHECKED_HASH"])
def test_bytecode_that_checks_its_source_fails_the_check(artifact: Path, mode: str) -> None:
    # A timestamp .pyc is stale whenever the zip changes the sources' times, and a checked one hashes every source.
    _compile(artifact / "handlers" / "api.py", mode=mode)
    with pytest.raises(CheckFailedError, match=r"1 not unchecked-hash \['handlers/__pycache__/api.cpython-313.pyc'\]"):
        check_artifact(ARM_313, "ApiFunction")


def test_bytecode_written_by_another_python_fails_the_check(artifact: Path) -> None:
    # Named cpython-313 but written by this interpreter: its magic number gives it away.
    check_artifact(ARM_313, "ApiFunction", magic=importlib.util.MAGIC_NUMBER)
    with pytest.raises(CheckFailedError, match=f"want {bytes.fromhex('ffff0d0a').hex()}"):
        check_artifact(ARM_313, "ApiFunction", magic=bytes.fromhex("ffff0d0a"))


def test_the_magic_number_of_this_python_needs_no_other_interpreter() -> None:
    assert bytecode_magic(f"{sys.version_info.major}.{sys.version_info.minor}") == importlib.util.MAGIC_NUMBER
    assert bytecode_magic("3.99") is None


def test_the_deploy_target_is_the_templates_default_runtime_and_architecture() -> None:
    target = default_target()
    assert (target.runtime, target.architecture, target.importable) == ("python3.13", "arm64", False)


@pytest.fixture
def nested_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build of template.yaml as `sam build` lays it out: each nested template copied to <LogicalId>/template.yaml."""
    monkeypatch.setattr(sam_check, "BUILD_ROOT", tmp_path)
    built = ARM_313.build_dir
    (built / "Observability").mkdir(parents=True)
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert "Location: observability.yaml" in template
    (built / "template.yaml").write_text(
        template.replace("Location: observability.yaml", "Location: Observability/template.yaml"), encoding="utf-8"
    )
    shutil.copy(ROOT / "observability.yaml", built / "Observability" / "template.yaml")
    return built


def test_a_build_with_the_nested_template_beside_it_passes(nested_build: Path) -> None:
    assert check_nested_templates(ARM_313) == 1


def test_a_build_without_the_nested_template_fails_the_check(nested_build: Path) -> None:
    shutil.rmtree(nested_build / "Observability")
    with pytest.raises(CheckFailedError, match=r"Observability: the build has no Observability/template\.yaml"):
        check_nested_templates(ARM_313)


def test_a_built_template_still_pointing_at_the_source_fails_the_check(nested_build: Path) -> None:
    built = nested_build / "template.yaml"
    text = built.read_text(encoding="utf-8").replace("Observability/template.yaml", "observability.yaml")
    built.write_text(text, encoding="utf-8")
    with pytest.raises(CheckFailedError, match=r"Location is 'observability\.yaml'"):
        check_nested_templates(ARM_313)


def test_a_built_nested_template_that_lost_a_resource_fails_the_check(nested_build: Path) -> None:
    child = nested_build / "Observability" / "template.yaml"
    text = child.read_text(encoding="utf-8").replace("  DbPoolExhaustedAlarm:\n", "  RenamedAlarm:\n")
    child.write_text(text, encoding="utf-8")
    with pytest.raises(CheckFailedError, match="has resources"):
        check_nested_templates(ARM_313)
