"""Domain errors of the notes sample app, mapped to HTTP in one place (lib.sample_app.api.ERRORS)."""

from __future__ import annotations


class NoteNotFoundError(Exception):
    """No live note has this id (never existed, deleted, or expired)."""


class IdempotencyConflictError(Exception):
    """An Idempotency-Key was reused with a different request body."""


class InvalidCursorError(Exception):
    """A pagination cursor that this API did not issue (or that was altered)."""


class IdempotencyKeyNotYetVisibleError(Exception):
    """A concurrent request with the same key committed after this statement began: run the unit again to see it."""
