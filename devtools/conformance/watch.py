"""The weekly dependency watch's report: what was installed, what passed, the gate proposal, in one issue body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from devtools.conformance import gate, sources

# GitHub refuses issue bodies over 65,536 characters; the differences are cut well before that.
MAX_DIFFERENCE_LINES: Final = 40
STEP_TITLES: Final = {
    "conformance": "`make conformance` (SQLAlchemy's and pg8000's suites, stock vs the kit's drivers)",
    "tiers": "the kit's tiers: `make pytest` (pipelined driver, then the stock pass) and `make pytest-runtime`",
}


def _versions_table(pins: dict[str, str], tested: dict[str, str]) -> list[str]:
    lines = ["| Package | Pinned | Tested |", "|---|---|---|"]
    for package in sources.WATCHED_PACKAGES:
        pinned = pins.get(sources._normal(package), "?")
        found = tested.get(package, "?")
        lines.append(f"| {package} | {pinned} | {found}{' (newer)' if found != pinned else ''} |")
    return lines


def _conformance_section(evidence: dict[str, Any] | None) -> list[str]:
    if evidence is None:
        return ["No conformance results: the run ended before it wrote them (see the job log)."]
    lines = [
        f"Conformance verdict: **{evidence.get('verdict')}**, {evidence.get('unexplained')} unexplained differences."
    ]
    unexplained = [item for item in evidence.get("differences", []) if item.get("reason") is None]
    for item in unexplained[:MAX_DIFFERENCE_LINES]:
        key = item["key"]
        message = f": {item['message']}" if item.get("message") else ""
        lines.append(f"- `{key['suite']}.{key['route']}.{key['driver']}` `{item['test']}` {item['outcome']}{message}")
    if len(unexplained) > MAX_DIFFERENCE_LINES:
        lines.append(f"- … and {len(unexplained) - MAX_DIFFERENCE_LINES} more (results.json in the run's artifact)")
    lines += [f"- run not compared: {problem}" for problem in evidence.get("problems", [])]
    return lines


def compose(
    steps: dict[str, str], evidence: dict[str, Any] | None, pins: dict[str, str], written: tuple[Any, Any] | None
) -> tuple[str, str, bool]:
    """The issue body (markdown), the verdict (pass/fail) and whether it proposes a wider pg8000 gate."""
    passed = bool(steps) and all(outcome == "success" for outcome in steps.values())
    verdict = "pass" if passed and evidence is not None else "fail"
    tested = dict(evidence.get("versions", {})) if evidence else {}
    lines = [f"## Dependency watch: {verdict}", "", *_versions_table(pins, tested), ""]
    lines += [f"- {STEP_TITLES.get(name, name)}: **{outcome}**" for name, outcome in steps.items()]
    lines += ["", *_conformance_section(evidence), ""]
    propose = verdict == "pass" and written is not None
    if written is not None:
        low, high = written
        line = f"TESTED_RANGE: Final = ({low!r}, {high!r})"
        if propose:
            lines += [
                "### pg8000 gate",
                f"pg8000 {gate.dotted(high)} passed conformance and the kit's tiers ran the pipelined driver on it "
                "(the gate was widened in the run's checkout first). Proposed for lib/dbkit/pg8000_internals.py, "
                f"with requirements.txt's pin moved to {gate.dotted(high)}:",
                "",
                f"    {line}",
                "",
                "(`make conformance`, then `python -m devtools.conformance range --write`, writes it.)",
            ]
        else:
            lines += [f"The gate was widened in the run's checkout ({line}), but the tiers did not pass: no proposal."]
    return "\n".join(lines) + "\n", verdict, propose


RANGE_FILE: Final = sources.CACHE / "range.json"


def record_written(before: tuple[Any, Any], after: tuple[Any, Any], path: Path = RANGE_FILE) -> None:
    """Note that `range --write` changed the gate in this checkout (the report proposes it if the tiers pass)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"before": before, "after": after}) + "\n", encoding="utf-8")


def written_range(path: Path = RANGE_FILE) -> tuple[Any, Any] | None:
    """The range `range --write` put in this checkout, if it changed one."""
    if not path.exists():
        return None
    low, high = json.loads(path.read_text(encoding="utf-8"))["after"]
    return tuple(low), tuple(high)


def load_evidence(results: Path) -> dict[str, Any] | None:
    """results.json of the conformance run, if it finished."""
    if not results.exists():
        return None
    data: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    return data
