"""Where a local run takes a function's code from: its `sam build` artifact when that is current and runs here.

`make sam-build` (or `sam build`) leaves each function's artifact in .aws-sam/build/<Function>: handlers/, lib/ and
the pinned requirements with their bytecode, as Lambda receives them. The local Lambda runs a function from there
when the artifact holds exactly the source tree's handlers/ and lib/ and requirements.txt's pins, and was built for
the interpreter that will run it (its compiled wheels name that Python and this machine); otherwise it runs from the
source tree (handlers/ and lib/ here, packages from the interpreter's venv) and says why.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

from devtools.function_config import FunctionConfig
from devtools.runtime_python import RuntimePython

BUILD_DIR = Path(".aws-sam") / "build"
OWN_CODE = ("handlers", "lib")
REQUIREMENTS = "requirements.txt"
# A wheel every artifact holds compiled: its extension names the Python and machine the artifact was built for.
COMPILED_PROBE = "pydantic_core"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


@dataclass(frozen=True)
class FunctionCode:
    """The folder a function's execution environments start in, and why that one."""

    root: Path
    artifact: bool
    reason: str

    def describe(self) -> str:
        """For the tools' output: artifact or source tree, and why."""
        return f"code: {'the sam build artifact' if self.artifact else 'the source tree'} ({self.reason})"


def function_code(config: FunctionConfig, python: RuntimePython, *, build_dir: Path | None = None) -> FunctionCode:
    """The function's artifact under `build_dir` (default: .aws-sam/build beside its code) when usable, else source."""
    source = config.code_root
    build_dir = build_dir if build_dir is not None else source / BUILD_DIR
    artifact = build_dir / config.logical_id
    hint = "`make sam-build SAM_ARCHITECTURE=" + _architecture() + "` builds one this machine runs"
    if not all((artifact / name).is_dir() for name in OWN_CODE):
        return FunctionCode(source, False, f"no artifact in {_relative(artifact, source)}; {hint}")
    wanted = _compiled_tag(python.version)
    built = sorted(path.name for path in (artifact / COMPILED_PROBE).glob("*.so"))
    if not any(wanted in name for name in built):
        return FunctionCode(
            source,
            False,
            f"{_relative(artifact, source)} is not built for Python {python.version} on {platform.machine()} "
            f"({COMPILED_PROBE}: {', '.join(built) or 'none'}); {hint}",
        )
    changed = _first_difference(source, artifact)
    if changed:
        return FunctionCode(source, False, f"{_relative(artifact, source)} is out of date: {changed}; {hint}")
    tags = sorted({path.suffixes[-2].lstrip(".") for path in (artifact / "handlers").rglob("*.pyc")})
    bytecode = f"{', '.join(tags)} bytecode" if tags else "no bytecode"
    return FunctionCode(
        artifact, True, f"{_relative(artifact, source)}: {bytecode}, the source tree's handlers/, lib/ and pins"
    )


def _first_difference(source: Path, artifact: Path) -> str:
    """What differs between the source tree and the artifact (own code, pinned requirements); empty when nothing."""
    for name in OWN_CODE:
        ours = _files(source / name)
        theirs = _files(artifact / name)
        for relative in sorted(ours.keys() | theirs.keys()):
            if relative not in theirs:
                return f"{name}/{relative} is not in it"
            if relative not in ours:
                return f"it has {name}/{relative}, the source tree does not"
            if ours[relative].read_bytes() != theirs[relative].read_bytes():
                return f"{name}/{relative} differs"
    requirements = source / REQUIREMENTS
    if requirements.is_file():
        installed = {_normalise(path.name.removesuffix(".dist-info")) for path in artifact.glob("*.dist-info")}
        for line in requirements.read_text(encoding="utf-8").splitlines():
            match = _PIN.match(line.strip())
            if match and _normalise(f"{match[1]}-{match[2]}") not in installed:
                return f"{match[1]}=={match[2]} (requirements.txt) is not installed in it"
    return ""


def _files(root: Path) -> dict[str, Path]:
    return {
        str(path.relative_to(root)): path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _compiled_tag(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"cpython-{major}{minor}-{platform.machine()}-linux-gnu"


def _architecture() -> str:
    return {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "x86_64")


def _relative(path: Path, project: Path) -> str:
    try:
        return str(path.relative_to(project)) or "."
    except ValueError:
        return str(path)
