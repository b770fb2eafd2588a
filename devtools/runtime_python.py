"""Which Python the local Lambda runtime runs a function on: the one its Runtime names when installed, else .venv's.

`make venv` creates .venv-X.Y (requirements-dev.txt, awslambdaric included) for the template's default runtime when
a pythonX.Y is installed (devtools/bootstrap.sh runtime-venv X.Y); functions of that runtime then run on exactly that
version. Without it they run on .venv's Python, and every tool says so.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from devtools.paths import ROOT

_RUNTIME = re.compile(r"^python(\d+)\.(\d+)$")


@dataclass(frozen=True)
class RuntimePython:
    """An interpreter for a function: its path, its exact version, and why it was chosen."""

    executable: Path
    version: str
    runtime: str
    matches: bool
    fallback_reason: str = ""
    runtime_client: str = "awslambdaric (not installed)"

    def describe(self) -> str:
        """One line for the tools' output: which Python really runs, and why when it is not the runtime's."""
        where = _relative(self.executable)
        if self.matches:
            return f"{self.runtime_client} on Python {self.version} ({where}), as {self.runtime} in Lambda"
        return f"{self.runtime_client} on Python {self.version} ({where}), NOT {self.runtime}: {self.fallback_reason}"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


_PROBE = """
import sys
from importlib import metadata
try:
    client = "awslambdaric " + metadata.version("awslambdaric")
except metadata.PackageNotFoundError:
    client = "awslambdaric (not installed)"
print("%d.%d.%d" % sys.version_info[:3], client, sep="\\n")
"""


@cache
def _probe(executable: Path) -> tuple[str, str] | None:
    """An interpreter's full version ("3.13.0") and its awslambdaric; None when it does not run."""
    try:
        completed = subprocess.run(
            [str(executable), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    lines = completed.stdout.splitlines()
    return (lines[0], lines[1]) if completed.returncode == 0 and len(lines) == 2 else None


def interpreter_version(executable: Path) -> str | None:
    """The full version of an interpreter ("3.13.0"), None when it does not run."""
    probe = _probe(executable)
    return probe[0] if probe else None


def runtime_python(runtime: str, *, root: Path = ROOT, fallback: Path | None = None) -> RuntimePython:
    """The interpreter for a Lambda runtime name ("python3.13"): root/.venv-3.13 when it runs, else `fallback`."""
    fallback = fallback or Path(sys.executable)
    match = _RUNTIME.match(runtime)
    if match is None:
        reason = f"{runtime or 'no Runtime'} is not a Python runtime"
    else:
        wanted = f"{match.group(1)}.{match.group(2)}"
        for candidate in (root / f".venv-{wanted}" / "bin" / "python", fallback):
            probe = _probe(candidate) if candidate.exists() else None
            if probe is not None and probe[0].rsplit(".", 1)[0] == wanted:
                return RuntimePython(candidate, probe[0], runtime, matches=True, runtime_client=probe[1])
        reason = (
            f"no .venv-{wanted}; `devtools/bootstrap.sh runtime-venv {wanted}` makes one when a python{wanted} is "
            "installed (on PATH or with pyenv), as `make venv` does for the template's default runtime"
        )
    version, client = _probe(fallback) or ("?", "awslambdaric (not installed)")
    return RuntimePython(fallback, version, runtime, matches=False, fallback_reason=reason, runtime_client=client)
