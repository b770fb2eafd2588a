"""The notes data functions on an isolated session: each test sees only the rows it creates."""

from __future__ import annotations

from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.sample_app import notes
from lib.sample_app.errors import NoteNotFoundError


def _create(session: Session, title: str, ttl_seconds: int | None = None) -> notes.Note:
    created = notes.create_note(session, title=title, body="", ttl_seconds=ttl_seconds, idempotency_key=None)
    return created.note


def _all_pages(session: Session, limit: int) -> list[list[notes.Note]]:
    pages = [notes.list_notes(session, limit=limit)]
    while pages[-1].next_cursor is not None:
        pages.append(notes.list_notes(session, limit=limit, after=pages[-1].next_cursor))
    return [page.notes for page in pages]


def test_an_isolated_connection_starts_with_no_notes(isolated_notes: Session) -> None:
    assert notes.list_notes(isolated_notes, limit=100).notes == []
    assert isolated_notes.execute(text("SELECT count(*) FROM notes")).scalar_one() == 0


def test_pages_hold_every_note_once_newest_first_and_the_last_has_no_cursor(isolated_notes: Session) -> None:
    created = []
    for i in range(5):
        # One transaction gives every note the same created_at (now()): the id must break the tie.
        created.append(_create(isolated_notes, f"note {i}"))
    pages = _all_pages(isolated_notes, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [note for page in pages for note in page]
    assert sorted(note.id for note in listed) == sorted(note.id for note in created)
    keys = [(note.created_at, note.id) for note in listed]
    assert keys == sorted(keys, reverse=True)


def test_an_exact_multiple_of_the_page_size_ends_without_an_empty_page(isolated_notes: Session) -> None:
    for i in range(4):
        _create(isolated_notes, f"note {i}")
    assert [len(page) for page in _all_pages(isolated_notes, limit=2)] == [2, 2]


def test_expired_notes_are_hidden_from_get_list_and_delete_but_kept(isolated_notes: Session) -> None:
    expired_id: UUID = isolated_notes.execute(
        text("INSERT INTO notes (title, expires_at) VALUES ('old', now() - interval '1 second') RETURNING id")
    ).scalar_one()
    live = _create(isolated_notes, "live", ttl_seconds=3600)
    assert [note.id for note in notes.list_notes(isolated_notes, limit=100).notes] == [live.id]
    with pytest.raises(NoteNotFoundError):
        notes.get_note(isolated_notes, expired_id)
    with pytest.raises(NoteNotFoundError):
        notes.delete_note(isolated_notes, expired_id)
    # Hidden, not deleted: removing rows is the purge's job.
    assert isolated_notes.execute(text("SELECT count(*) FROM notes WHERE id = :id"), {"id": expired_id}).scalar() == 1
