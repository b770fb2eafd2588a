"""The sample-event helpers live in devtools.events (the bench uses them too and must not import tests/)."""

from devtools.events import (
    EVENTS_DIR,
    event_names,
    load_event,
    with_header,
    with_json_body,
    with_note_id,
    with_query,
)

__all__ = ["EVENTS_DIR", "event_names", "load_event", "with_header", "with_json_body", "with_note_id", "with_query"]
