"""Figures the fault, load and fuzz tests measured, shown in pytest's terminal summary (what the README quotes)."""

from __future__ import annotations

import pytest

_SECTIONS: dict[str, list[str]] = {}


def record(section: str, line: str) -> None:
    """Keep one line of figures for `section`."""
    _SECTIONS.setdefault(section, []).append(line)


def write_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Write every recorded section once (several conftests call this hook; the first one prints)."""
    for section, lines in _SECTIONS.items():
        terminalreporter.write_sep("-", section)
        for line in lines:
            terminalreporter.write_line(line)
    _SECTIONS.clear()
