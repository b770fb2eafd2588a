"""The bench's tables (Markdown, printed and written to bench/results.md) and the issue-6 targets they are held to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools.bench.coldstart import TARGET_RATIO, ImportTiming
from tools.bench.roundtrips import DELAYS_MS, Row, Steps
from tools.bench.scale import LoadResult

TEMPLATE = "template"
WARM_ONE_STATEMENT = ("warm GET /notes/{id}", "warm POST /notes", "warm GET /notes")
HEALTH = "warm GET /health"
FIRST_REQUEST = "first request of a new environment (GET /notes/{id})"
SCALE_TARGET_N = 500


@dataclass(frozen=True)
class Target:
    """One issue-6 target for the template's default profile."""

    name: str
    measured: str
    met: bool


def _count(span: tuple[int, int]) -> str:
    low, high = span
    return str(low) if low == high else f"{low}-{high}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)) + " |"
        for line in (header, *rows)
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def round_trip_table(rows: Sequence[Row]) -> str:
    header = [
        "scenario",
        "profile",
        "round trips",
        "new conns",
        "pings",
        "xacts",
        *(f"hold ms @ +{d:g}" for d in DELAYS_MS),
        *(f"wall ms @ +{d:g}" for d in DELAYS_MS),
    ]
    body = [
        [
            row.scenario,
            row.profile,
            _round_trips(row),
            _count(row.connections),
            _count(row.pings),
            _count(row.transactions) if row.transactions else "-",
            *(_ms(row.hold_ms.get(d)) for d in DELAYS_MS),
            *(f"{row.wall_ms[d]:.1f}" for d in DELAYS_MS),
        ]
        for row in rows
    ]
    return _table(header, body)


def _round_trips(row: Row) -> str:
    """The range over every sample; when one delay differs from the rest, which one."""
    text = _count(row.round_trips)
    spans = set(row.round_trips_at.values())
    if len(spans) > 1:
        text += " (" + ", ".join(f"+{d:g}: {_count(span)}" for d, span in row.round_trips_at.items()) + ")"
    return text


def profile_matrix(rows: Sequence[Row], title: str, cell: Callable[[Row], str]) -> str:
    """One row per scenario, one column per profile, in run order."""
    profiles = list(dict.fromkeys(row.profile for row in rows))
    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    by_key = {(row.scenario, row.profile): row for row in rows}
    body = []
    for scenario in scenarios:
        cells = [scenario]
        for profile in profiles:
            row = by_key.get((scenario, profile))
            cells.append(cell(row) if row else "")
        body.append(cells)
    return _table([title, *profiles], body)


def side_by_side_table(rows: Sequence[Row]) -> str:
    """Round trips, server hold ms and wall ms at the largest delay, one column per profile: the README's table."""
    delay = DELAYS_MS[-1]
    return profile_matrix(
        rows,
        f"round trips / hold ms / wall ms @ +{delay:g} ms",
        lambda row: f"{_count(row.round_trips)} / {_ms(row.hold_ms.get(delay))} / {row.wall_ms[delay]:.0f}",
    )


def steps_table(steps: Sequence[Steps]) -> str:
    fields = [
        ("new connection (TCP + TLS + SCRAM + startup)", "connect"),
        ("SQLAlchemy first-connect initialisation (once per engine)", "first_connect_init"),
        ("BEGIN + one parameterised statement", "begin_and_statement"),
        ("COMMIT", "commit"),
        ("ROLLBACK", "rollback"),
        ("liveness ping (when one runs)", "ping"),
    ]
    return _table(
        ["driver step (round trips)", *(s.profile for s in steps)],
        [[label, *(str(getattr(s, name)) for s in steps)] for label, name in fields],
    )


def import_table(timings: Sequence[ImportTiming]) -> str:
    header = [
        "handler",
        "import ms",
        "deps alone ms",
        "ratio (quartiles)",
        f"≤ {TARGET_RATIO}x",
        "added after deps ms",
        "largest additions (self ms)",
    ]
    body = [
        [
            t.handler,
            f"{t.handler_ms:.0f}",
            f"{t.dependencies_ms:.0f}",
            f"{t.ratio:.2f}x ({t.ratio_quartiles[0]:.2f}-{t.ratio_quartiles[1]:.2f})",
            "PASS" if t.met else "MISS",
            f"{t.added_ms:.0f}",
            ", ".join(f"{name} {ms:.1f}" for name, ms in t.excess[:3]),
        ]
        for t in timings
    ]
    return _table(header, body)


def scale_table(results: Sequence[LoadResult]) -> str:
    header = ["target", "N envs", "requests", "errors", "p50 ms", "p99 ms", "ok req/s", "s", "what failed"]
    body = [
        [
            r.target,
            str(r.environments),
            str(r.requests),
            str(r.errors),
            f"{r.p50_ms:.0f}",
            f"{r.p99_ms:.0f}",
            f"{r.throughput:.0f}",
            f"{r.seconds:.1f}",
            "; ".join(f"{kind} x{count}" for kind, count in r.error_kinds.items()) or "-",
        ]
        for r in results
    ]
    return _table(header, body)


def targets(
    rows: Sequence[Row], steps: Sequence[Steps], imports: Sequence[ImportTiming], scale: Sequence[LoadResult]
) -> list[Target]:
    """The issue-6 targets, evaluated on the template's default profile."""
    mine = {row.scenario: row for row in rows if row.profile == TEMPLATE}
    found: list[Target] = []
    if mine:
        warm = [mine[name] for name in WARM_ONE_STATEMENT if name in mine]
        worst = max(row.round_trips[1] for row in warm)
        found.append(
            Target(
                "warm request with one statement ≤ 2 round trips",
                " / ".join(f"{row.scenario.removeprefix('warm ')} {_count(row.round_trips)}" for row in warm),
                worst <= 2,
            )
        )
        health = mine[HEALTH].round_trips
        found.append(Target("GET /health = 1 round trip", _count(health), health == (1, 1)))
        warm_rows = [row for row in mine.values() if row.scenario.startswith("warm ")]
        pings = max(row.pings[1] for row in warm_rows)
        idle = [row for row in mine.values() if "idle" in row.scenario]
        idle_text = f"; after idle: {_count(idle[0].pings)} ping" if idle else ""
        found.append(
            Target(
                "no extra round trip for liveness while requests keep coming",
                f"{pings} pings on warm requests{idle_text}",
                pings == 0,
            )
        )
        first = mine[FIRST_REQUEST].round_trips
        found.append(Target("first request of a new environment ≤ 12 round trips", _count(first), first[1] <= 12))
    template_steps = [s for s in steps if s.profile == TEMPLATE]
    if template_steps:
        s = template_steps[0]
        found.append(Target("COMMIT = 1 round trip", str(s.commit), s.commit == 1))
        found.append(Target("ROLLBACK = 1 round trip", str(s.rollback), s.rollback == 1))
    for timing in imports:
        found.append(
            Target(f"{timing.handler} import ≤ {TARGET_RATIO}x its dependencies", f"{timing.ratio:.2f}x", timing.met)
        )
    pooled = [r for r in scale if r.environments == SCALE_TARGET_N and r.target.startswith("pooler")]
    if pooled:
        errors = pooled[0].errors
        found.append(Target(f"N = {SCALE_TARGET_N} through the pooler with 0 errors", f"{errors} errors", not errors))
    return found


def targets_table(found: Sequence[Target]) -> str:
    return _table(
        ["target (template default)", "measured", "result"],
        [[t.name, t.measured, "PASS" if t.met else "MISS"] for t in found],
    )
