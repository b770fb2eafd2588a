"""The suites' sources: the sdists of the SQLAlchemy and pg8000 releases under test, downloaded once and cached.

The versions are the installed ones, which `make venv` makes the pins of requirements.txt; the dependency watch
installs newer releases and tests those. Nothing here is committed: ``.cache/conformance/`` is git-ignored.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

from devtools.paths import ROOT

CACHE: Final = ROOT / ".cache" / "conformance"
REQUIREMENTS: Final = ROOT / "requirements.txt"
# The releases whose suites run, and the one other release the dependency watch follows (no suite of its own).
SUITE_PACKAGES: Final = ("SQLAlchemy", "pg8000")
WATCHED_PACKAGES: Final = ("pg8000", "scramp", "SQLAlchemy", "aws-lambda-powertools")


class SourceError(RuntimeError):
    """A suite's source could not be had; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """One extracted sdist."""

    package: str
    version: str
    root: Path


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """``name==version`` lines of requirements.txt, by normalised name."""
    pins: dict[str, str] = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[_normal(match.group(1))] = match.group(2)
    return pins


def installed_version(package: str) -> str | None:
    """The installed release of ``package`` (None when it is not installed)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def versions_under_test(*, allow_unpinned: bool) -> dict[str, str]:
    """The installed releases of the watched packages; unless ``allow_unpinned``, they must be requirements.txt's."""
    pins = pinned_versions()
    found: dict[str, str] = {}
    mismatched = []
    for package in WATCHED_PACKAGES:
        installed = installed_version(package)
        if installed is None:
            raise SourceError(f"{package} is not installed: run `make venv`")
        found[package] = installed
        pinned = pins.get(_normal(package))
        if pinned is not None and pinned != installed:
            mismatched.append(f"{package} {installed} (pinned {pinned})")
    if mismatched and not allow_unpinned:
        raise SourceError(
            f"installed releases differ from requirements.txt: {', '.join(mismatched)}; run `make venv`, "
            "or pass --unpinned to test the installed ones (the dependency watch does)"
        )
    return found


def _sdist(package: str, release: str, folder: Path) -> Path | None:
    wanted = f"{_normal(package)}-{release}.tar.gz".replace("-", "_")
    return next((path for path in folder.glob("*.tar.gz") if path.name.lower().replace("-", "_") == wanted), None)


def download(package: str, release: str, folder: Path) -> Path:
    """The sdist of ``package==release`` in ``folder``, downloaded with pip unless it is there already."""
    found = _sdist(package, release, folder)
    if found is not None:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    # --no-binary for this package only: with :all:, pip would also build the sdist's build dependencies (Cython)
    # from source to read its metadata, minutes instead of seconds.
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--no-binary", package, "--dest", str(folder), f"{package}=={release}"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _sdist(package, release, folder)
    if completed.returncode != 0 or found is None:
        raise SourceError(
            f"could not download the sdist of {package} {release} (pip exit {completed.returncode}); the suites "
            f"need it once, then it is cached in {folder}:\n{completed.stderr[-2000:]}"
        )
    return found


def fetch(package: str, release: str, cache: Path = CACHE) -> Source:
    """The extracted sdist of ``package==release`` under ``cache``/src, downloaded and extracted once."""
    tree = cache / "src" / f"{_normal(package)}-{release}"
    if (tree / ".extracted").exists():
        return Source(package, release, tree)
    archive = download(package, release, cache / "sdists")
    tree.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tree, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=tree.parent) as scratch, tarfile.open(archive) as bundle:
        bundle.extractall(scratch, filter="data")
        (top,) = Path(scratch).iterdir()
        top.rename(tree)
    (tree / ".extracted").write_text(f"{archive.name}\n")
    return Source(package, release, tree)
