"""The pipelined driver's pg8000 version gate, widened from evidence: a passing conformance run of a newer release.

``lib.dbkit.pg8000_internals.TESTED_RANGE`` says which pg8000 releases the pipelined driver runs on (outside it the
engine falls back to SQLAlchemy's stock dialect). A full conformance run with 0 unexplained differences on a newer
release is the evidence this module turns into a proposed range, and writes into that file on request (the
dependency watch does, so the kit's own tiers then run the pipelined driver on the new release too).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from devtools.paths import ROOT

INTERNALS: Final = ROOT / "lib" / "dbkit" / "pg8000_internals.py"
_LINE: Final = re.compile(r"^TESTED_RANGE: Final = \(\((\d+), (\d+), (\d+)\), \((\d+), (\d+), (\d+)\)\)$", re.M)

Version = tuple[int, int, int]


def parse(text: str) -> Version | None:
    """``1.31.6`` as (1, 31, 6); None for anything else (pre-releases are never evidence)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def dotted(version: Version) -> str:
    return ".".join(map(str, version))


def current(path: Path = INTERNALS) -> tuple[Version, Version]:
    """TESTED_RANGE as written in lib/dbkit/pg8000_internals.py."""
    match = _LINE.search(path.read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"no `TESTED_RANGE: Final = ((a, b, c), (x, y, z))` line in {path}")
    numbers = tuple(int(part) for part in match.groups())
    return (numbers[0], numbers[1], numbers[2]), (numbers[3], numbers[4], numbers[5])


def proposal(evidence: dict[str, Any], tested: tuple[Version, Version]) -> tuple[tuple[Version, Version] | None, str]:
    """The range a conformance run's results support (None: no change) and why."""
    release = str(evidence.get("versions", {}).get("pg8000", ""))
    version = parse(release)
    low, high = tested
    if version is None:
        return None, f"pg8000 {release or '(unknown)'} is not a final release: no evidence"
    if not evidence.get("complete"):
        return None, "the run was partial (a suite, driver, route or test selection): no evidence"
    if evidence.get("verdict") != "pass":
        return None, f"pg8000 {release} did not pass conformance: the range stays {dotted(low)} to {dotted(high)}"
    if low <= version <= high:
        return None, f"pg8000 {release} is inside the tested range {dotted(low)} to {dotted(high)} already"
    if version < low:
        return None, f"pg8000 {release} is older than the tested range: not widened downwards"
    return (low, version), f"pg8000 {release} passed every suite on every driver and route: widen to {release}"


def write(new: tuple[Version, Version], path: Path = INTERNALS) -> None:
    """Rewrite TESTED_RANGE in lib/dbkit/pg8000_internals.py."""
    low, high = new
    text = path.read_text(encoding="utf-8")
    replaced, count = _LINE.subn(f"TESTED_RANGE: Final = ({low!r}, {high!r})", text)
    if count != 1:
        raise ValueError(f"expected one TESTED_RANGE line in {path}")
    path.write_text(replaced, encoding="utf-8")
