"""Where the repository is: the one definition of its root for tools and tests (runtime code never needs it)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
