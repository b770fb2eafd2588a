"""Notes data access: functions take the unit's Session first and never commit; one statement per operation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Row, delete, func, insert, or_, select, text, tuple_
from sqlalchemy.orm import Session

from lib.sample_app.errors import (
    IdempotencyConflictError,
    IdempotencyKeyNotYetVisibleError,
    InvalidCursorError,
    NoteNotFoundError,
)
from lib.sample_app.models import Note as Note  # what the data functions return: notes.Note to their callers

# A note whose expiry has passed is gone as far as clients know (the purge deletes it later). The server's clock
# decides, in the same statement as the read or write.
_LIVE = or_(Note.expires_at.is_(None), Note.expires_at > func.now())
_NEWEST_FIRST = (Note.created_at.desc(), Note.id.desc())

# How long an Idempotency-Key is kept, whatever happens to its note (24 h, like the common payment APIs).
IDEMPOTENCY_WINDOW_SECONDS = 24 * 60 * 60

# Hand-written, because it is one statement that claims the key and inserts the note together: race-safe by the
# key's unique index (a concurrent request with the key waits for ours and then replays it), and one round trip.
# The ORM would need a statement per table and a read first. `fresh` fixes the new note's id and time once, so the
# key's row (the answer a replay needs) and the note are written together. The note is inserted only when this
# request claimed the key: a new key, or one whose window has passed (the purge may not have removed it yet).
# Otherwise the last branch replays the answer stored with the key: it is there even when the note was deleted or
# has expired since.
_CREATE_WITH_KEY = text(
    """
    WITH fresh AS (
        SELECT gen_random_uuid() AS id, now() AS created_at,
               now() + make_interval(secs => :ttl_seconds) AS expires_at
    ),
    claimed AS (
        INSERT INTO idempotency_keys AS k
            (key, request_hash, note_id, title, body, note_created_at, note_expires_at, expires_at)
        SELECT :key, :request_hash, id, :title, :body, created_at, expires_at,
               created_at + make_interval(secs => :window_seconds)
        FROM fresh
        ON CONFLICT (key) DO UPDATE SET
            request_hash = EXCLUDED.request_hash, note_id = EXCLUDED.note_id, title = EXCLUDED.title,
            body = EXCLUDED.body, note_created_at = EXCLUDED.note_created_at,
            note_expires_at = EXCLUDED.note_expires_at, expires_at = EXCLUDED.expires_at
        WHERE k.expires_at <= now()
        RETURNING note_id
    ),
    inserted AS (
        INSERT INTO notes (id, title, body, created_at, expires_at)
        SELECT id, :title, :body, created_at, expires_at FROM fresh
        WHERE EXISTS (SELECT FROM claimed)
        RETURNING id, title, body, created_at, expires_at
    )
    SELECT id, title, body, created_at, expires_at, CAST(NULL AS text) AS request_hash, false AS replayed
    FROM inserted
    UNION ALL
    SELECT note_id, title, body, note_created_at, note_expires_at, request_hash, true FROM idempotency_keys
    WHERE key = :key AND expires_at > now() AND NOT EXISTS (SELECT FROM inserted)
    """
)

_NOT_ISSUED = "cursor is not one this API issued; start again without it"

# A concurrent request with the same key that commits after this statement's snapshot was taken makes the claim
# do nothing while the snapshot cannot see that key's row yet; a new statement (new snapshot) sees it. The caller
# runs the unit again (a single-statement unit cannot send a second statement): this many times in all.
CREATE_ATTEMPTS = 3


@dataclass(frozen=True)
class CreatedNote:
    """The outcome of a create: the note, and whether it is an earlier request's note replayed for its key."""

    note: Note
    replayed: bool


@dataclass(frozen=True)
class Cursor:
    """Keyset position (created_at, id) of the last note on a page; opaque to clients."""

    created_at: datetime
    id: UUID

    def encode(self) -> str:
        # In UTC whatever the session's TimeZone, so that decode() can insist on exactly this spelling.
        moment = self.created_at.astimezone(UTC).isoformat()
        raw = json.dumps([moment, str(self.id)], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor `token` encodes; InvalidCursorError for any token encode() would not have produced."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, note_id = json.loads(raw)
            moment = datetime.fromisoformat(created_at)
            if moment.tzinfo is None:
                raise ValueError("cursor time without a time zone")
            # In UTC, as issued; a year-1 or year-9999 time at another offset has no UTC form (OverflowError),
            # and would otherwise overflow inside the driver.
            cursor = cls(created_at=moment.astimezone(UTC), id=UUID(note_id))
        except (binascii.Error, ValueError, TypeError, OverflowError) as error:
            raise InvalidCursorError(_NOT_ISSUED) from error
        # Only the canonical spelling is one we issued: other paddings, offsets, JSON spacing or UUID forms are not.
        if cursor.encode() != token:
            raise InvalidCursorError(_NOT_ISSUED)
        return cursor


@dataclass(frozen=True)
class NotePage:
    """Up to `limit` notes, newest first, and the cursor of the next page when there is one."""

    notes: list[Note]
    next_cursor: Cursor | None


def request_hash(*, title: str, body: str, ttl_seconds: int | None) -> str:
    """A stable digest of a create request, to tell a retry from a different request reusing its key."""
    canonical = json.dumps({"title": title, "body": body, "ttl_seconds": ttl_seconds}, sort_keys=True)
    return "v1:" + hashlib.sha256(canonical.encode()).hexdigest()


def create_note(
    session: Session,
    *,
    title: str,
    body: str,
    ttl_seconds: int | None,
    idempotency_key: str | None,
) -> CreatedNote:
    """Insert a note, or replay the note an earlier request with the same Idempotency-Key got, within the window.

    IdempotencyKeyNotYetVisibleError: a concurrent request with the key committed meanwhile; run the unit again.
    """
    if idempotency_key is None:
        # An INSERT that returns the row, not session.add(): expires_at is the server's now() + ttl, a value a
        # flush would leave unloaded (the ORM does not fetch SQL expressions it sent), and so unreadable after the
        # unit. One statement either way.
        statement = insert(Note).values(title=title, body=body, expires_at=_expiry(ttl_seconds)).returning(Note)
        return CreatedNote(note=session.scalars(statement).one(), replayed=False)
    digest = request_hash(title=title, body=body, ttl_seconds=ttl_seconds)
    params = {
        "title": title,
        "body": body,
        "ttl_seconds": ttl_seconds,
        "key": idempotency_key,
        "request_hash": digest,
        "window_seconds": IDEMPOTENCY_WINDOW_SECONDS,
    }
    row = session.execute(_CREATE_WITH_KEY, params).one_or_none()
    if row is None:
        raise IdempotencyKeyNotYetVisibleError("the key's row was committed after this statement began; run it again")
    if row.replayed and row.request_hash != digest:
        raise IdempotencyConflictError("Idempotency-Key was already used with a different request body")
    return CreatedNote(note=_answer(row), replayed=row.replayed)


def get_note(session: Session, note_id: UUID) -> Note:
    """The live note with this id."""
    # A select rather than session.get(): the live filter goes in the same statement.
    note = session.scalars(select(Note).where(Note.id == note_id, _LIVE)).one_or_none()
    if note is None:
        raise NoteNotFoundError(f"note {note_id} not found")
    return note


def delete_note(session: Session, note_id: UUID) -> None:
    """Delete the live note with this id (an expired note is already gone as far as clients know)."""
    # One DELETE ... RETURNING, not get + session.delete(): one statement (and round trip) instead of two. The
    # session holds no notes to keep in step with it.
    statement = delete(Note).where(Note.id == note_id, _LIVE).returning(Note.id)
    if session.execute(statement, execution_options={"synchronize_session": False}).one_or_none() is None:
        raise NoteNotFoundError(f"note {note_id} not found")


def list_notes(session: Session, *, limit: int, after: Cursor | None = None) -> NotePage:
    """Live notes newest first, starting after `after`; one extra row tells whether another page exists."""
    query = select(Note).where(_LIVE).order_by(*_NEWEST_FIRST).limit(limit + 1)
    if after is not None:
        # Keyset: the row comparison walks the (created_at DESC, id DESC) index from the cursor on.
        query = query.where(tuple_(Note.created_at, Note.id) < (after.created_at, after.id))
    rows = session.scalars(query).all()
    notes = list(rows[:limit])
    more = len(rows) > limit
    return NotePage(notes=notes, next_cursor=Cursor(notes[-1].created_at, notes[-1].id) if more else None)


def _expiry(ttl_seconds: int | None) -> ColumnElement[datetime] | None:
    if ttl_seconds is None:
        return None
    # make_interval(secs => n), as the keyed create computes it: n seconds, never calendar days.
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl_seconds)


def _answer(row: Row[Any]) -> Note:
    # Not added to the session: the answer stored with the key, which outlives its note (deleted, expired, purged).
    return Note(id=row.id, title=row.title, body=row.body, created_at=row.created_at, expires_at=row.expires_at)
