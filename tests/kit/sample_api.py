"""The heavy tiers (faults, load) drive the sample notes API: its events, its tables. Without them, say so."""

from __future__ import annotations

import pytest

from devtools.events import EVENTS_DIR

# What tests/kit/faults and tests/kit/load send (events/) and read back (the notes and idempotency_keys tables):
# idempotent creates, reads by id and pages, which is what proving no acknowledged write is lost or doubled needs.
NOTES_EVENTS = ("api-01-health", "api-02-create-note", "api-07-list-notes", "api-10-get-note-unknown-id")


def require_notes_api(tier: str) -> None:
    """Fail the test, naming the fix, in a project without the sample's events (the empty app, another app)."""
    missing = [name for name in NOTES_EVENTS if not (EVENTS_DIR / f"{name}.json").is_file()]
    if missing:
        pytest.fail(
            f"the {tier} tier drives the sample notes API (events {', '.join(NOTES_EVENTS)}, tables notes and "
            f"idempotency_keys) and events/ has no {', '.join(missing)}: it runs in the template repository and in "
            "projects that keep the sample; `make test` and `make bench` (app.toml's [bench]) cover your own app",
            pytrace=False,
        )
