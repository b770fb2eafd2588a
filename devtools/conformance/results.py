"""Per-test outcomes from the suites' junit XML, the comparison with the stock driver, the allow-list and reports."""

from __future__ import annotations

import fnmatch
import re
import tomllib
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from devtools.conformance.drivers import KIT_DRIVERS, STOCK

PASSED: Final = "passed"
FAILED: Final = "failed"
ERROR: Final = "error"
SKIPPED: Final = "skipped"
MISSING: Final = "missing"
OUTCOMES: Final = (PASSED, FAILED, ERROR, SKIPPED)
ALLOWLIST: Final = Path(__file__).with_name("allowlist.toml")
_MESSAGE_LIMIT: Final = 300


@dataclass(frozen=True)
class RunKey:
    """One pytest run: a suite, the way it reaches the server, the driver under test."""

    suite: str
    route: str
    driver: str

    @property
    def name(self) -> str:
        return f"{self.suite}.{self.route}.{self.driver}"


@dataclass
class RunResult:
    """What one run gave: each test's outcome and first error line, or why it could not run."""

    key: RunKey
    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    problem: str | None = None

    def counts(self) -> dict[str, int]:
        counted = Counter(self.outcomes.values())
        return {outcome: counted.get(outcome, 0) for outcome in OUTCOMES}


@dataclass(frozen=True)
class Difference:
    """A test that passes on the stock driver and not on a kit driver (same suite and route)."""

    key: RunKey
    test: str
    outcome: str
    message: str
    reason: str | None = None


@dataclass(frozen=True)
class Allowance:
    """An allow-list entry: which differences it accepts (fnmatch patterns; "*" for any) and why."""

    suite: str
    driver: str
    route: str
    test: str
    reason: str

    def matches(self, difference: Difference) -> bool:
        key = difference.key
        return all(
            fnmatch.fnmatchcase(value, pattern)
            for value, pattern in (
                (key.suite, self.suite),
                (key.driver, self.driver),
                (key.route, self.route),
                (difference.test, self.test),
            )
        )


def case_id(classname: str, name: str, *, per_backend: bool = False) -> str:
    """``module.Class::name``; ``per_backend`` drops the suffix SQLAlchemy gives its per-database test classes."""
    if per_backend:
        # ExceptionTest_postgresql+pg8000_15_18: backend, the dialect's driver name, the server version.
        classname = re.sub(r"_[a-z]+\+[A-Za-z0-9_]+?(?:_\d+)+$", "", classname)
    return f"{classname}::{name}"


def _first_line(element: ElementTree.Element) -> str:
    text = element.get("message") or element.text or ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    message = lines[0] if lines else element.tag
    return message[:_MESSAGE_LIMIT]


def parse_junit(path: Path, *, per_backend: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """Each test's outcome (a failure beats an error beats a skip) and the first line of its failure or error."""
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    rank = {PASSED: 0, SKIPPED: 1, ERROR: 2, FAILED: 3}
    # The XML is the junit report of a pytest run this harness just made, not input from elsewhere.
    for case in ElementTree.parse(path).getroot().iter("testcase"):  # noqa: S314
        test = case_id(case.get("classname", ""), case.get("name", ""), per_backend=per_backend)
        outcome, message = PASSED, ""
        for child in case:
            found = {"failure": FAILED, "error": ERROR, "skipped": SKIPPED}.get(child.tag)
            if found is not None and rank[found] > rank[outcome]:
                outcome, message = found, _first_line(child)
        if test in outcomes and rank[outcomes[test]] >= rank[outcome]:
            continue
        outcomes[test] = outcome
        if message and outcome != SKIPPED:
            messages[test] = message
    return outcomes, messages


def junit_seconds(path: Path) -> float:
    """How long the run's tests took, as its junit report says."""
    root = ElementTree.parse(path).getroot()  # noqa: S314 (our own pytest run's report)
    return sum(float(suite.get("time", 0)) for suite in root.iter("testsuite"))


def load_allowlist(path: Path = ALLOWLIST) -> list[Allowance]:
    """The allow-list's entries; each must name suite, driver, route, test and a reason."""
    if not path.exists():
        return []
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = []
    for index, entry in enumerate(document.get("allow", [])):
        missing = [name for name in ("suite", "driver", "route", "test", "reason") if not str(entry.get(name, ""))]
        if missing:
            raise ValueError(f"{path.name}: entry {index + 1} lacks {', '.join(missing)}")
        entries.append(Allowance(**{name: str(entry[name]) for name in ("suite", "driver", "route", "test", "reason")}))
    return entries


def compare(results: list[RunResult], allowlist: list[Allowance]) -> list[Difference]:
    """Every test that passes on stock and not on a kit driver, with the allow-list's reason where one applies."""
    by_key = {result.key: result for result in results}
    differences = []
    for result in results:
        if result.key.driver not in KIT_DRIVERS or result.problem:
            continue
        baseline = by_key.get(RunKey(result.key.suite, result.key.route, STOCK))
        if baseline is None or baseline.problem:
            continue
        for test, outcome in sorted(baseline.outcomes.items()):
            found = result.outcomes.get(test, MISSING)
            if outcome != PASSED or found == PASSED:
                continue
            difference = Difference(result.key, test, found, result.messages.get(test, ""))
            reason = next((entry.reason for entry in allowlist if entry.matches(difference)), None)
            differences.append(Difference(result.key, test, found, difference.message, reason))
    return differences


def problems(results: list[RunResult]) -> list[str]:
    """Runs that could not be compared: they did not run, or their stock reference did not."""
    found = [f"{result.key.name}: {result.problem}" for result in results if result.problem]
    keys = {result.key for result in results}
    for key in sorted(keys, key=lambda item: item.name):
        if key.driver in KIT_DRIVERS and RunKey(key.suite, key.route, STOCK) not in keys:
            found.append(f"{key.name}: no stock run of {key.suite} on {key.route} to compare with")
    return found


def unused_allowances(allowlist: list[Allowance], differences: list[Difference]) -> list[Allowance]:
    """Allow-list entries that accepted nothing in this run (stale, or for a run that was not made)."""
    return [entry for entry in allowlist if not any(entry.matches(difference) for difference in differences)]


def table(results: list[RunResult]) -> list[dict[str, Any]]:
    """One row per run: suite, route, driver, counts, seconds, problem."""
    rows = []
    for result in results:
        counts = result.counts()
        rows.append(
            {
                "suite": result.key.suite,
                "route": result.key.route,
                "driver": result.key.driver,
                **counts,
                "total": sum(counts.values()),
                "seconds": round(result.seconds, 1),
                "problem": result.problem,
            }
        )
    return rows


def render_text(rows: list[dict[str, Any]]) -> str:
    """The table for a terminal."""
    header = ["suite", "route", "driver", *OUTCOMES, "total", "seconds", "problem"]
    cells = [[str(row[name] if row[name] is not None else "") for name in header] for row in rows]
    widths = [max(len(name), *(len(line[index]) for line in cells)) for index, name in enumerate(header)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(header, widths, strict=True))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """The table for docs/testing.md."""
    lines = ["| Suite | Route | Driver | Passed | Failed | Errors | Skipped |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        note = f" ({row['problem']})" if row["problem"] else ""
        lines.append(
            f"| {row['suite']} | {row['route']} | {row['driver']}{note} | {row[PASSED]} | {row[FAILED]} | "
            f"{row[ERROR]} | {row[SKIPPED]} |"
        )
    return "\n".join(lines)


def difference_lines(differences: list[Difference]) -> list[str]:
    """One line per difference: run, test, outcome and the first line of its error (allowed ones by reason)."""
    lines = [
        f"{difference.key.name}  {difference.test}  {difference.outcome}"
        + (f": {difference.message}" if difference.message else "")
        for difference in differences
        if difference.reason is None
    ]
    reasons = dict.fromkeys(difference.reason for difference in differences if difference.reason is not None)
    for reason in reasons:
        runs = [difference for difference in differences if difference.reason == reason]
        tests = sorted({difference.test for difference in runs})
        lines.append(f"{', '.join(tests)} on {len(runs)} run(s), allowed: {reason}")
    return lines


def as_json(difference: Difference) -> dict[str, Any]:
    """A difference as JSON-ready data."""
    data = asdict(difference)
    data["key"] = asdict(difference.key)
    return data
