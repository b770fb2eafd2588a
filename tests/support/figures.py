"""Figures the fault and load tiers measured, shown in pytest's terminal summary (what the README quotes)."""

from __future__ import annotations

import pytest

_SECTIONS: dict[str, list[str]] = {}


def record(section: str, line: str) -> None:
    """Keep one line of figures for `section`."""
    _SECTIONS.setdefault(section, []).append(line)


def write_summary(terminalreporter: pytest.TerminalReporter, section: str) -> None:
    """Write the recorded lines of `section` (nothing when no test recorded any)."""
    lines = _SECTIONS.get(section)
    if lines:
        terminalreporter.write_sep("-", section)
        for line in lines:
            terminalreporter.write_line(line)
