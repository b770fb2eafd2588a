"""The bench's ORM units: the same Session code run through the template's run_in_session and a guide's Session.

Each unit is a function of a Session on the sample's Note model; a profile decides how the Session is opened and
committed (tools.bench.profiles: `orm`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.sample_app.models import Note

PAGE = 20
# Notes the bench writes expire, so repeated runs leave nothing behind for long.
TTL_SECONDS = 600


def _expiring(title: str) -> Note:
    return Note(title=title, expires_at=datetime.now(UTC) + timedelta(seconds=TTL_SECONDS))


@dataclass(frozen=True)
class OrmUnit:
    """One ORM unit of work: what it does with the Session, and what the template's run_in_session is told."""

    name: str
    work: Callable[[Session], Any]
    single_statement: bool = False
    read_only: bool = False


def get_by_key(note_id: uuid.UUID) -> OrmUnit:
    return OrmUnit("ORM get by key", lambda s: s.get(Note, note_id), single_statement=True, read_only=True)


def select_page() -> OrmUnit:
    def page(session: Session) -> list[Note]:
        newest = select(Note).order_by(Note.created_at.desc(), Note.id.desc()).limit(PAGE)
        return list(session.scalars(newest))

    return OrmUnit("ORM select page", page, single_statement=True, read_only=True)


def insert_one() -> OrmUnit:
    def add(session: Session) -> Note:
        note = _expiring(f"bench orm {uuid.uuid4()}")
        session.add(note)
        return note

    return OrmUnit("ORM one-row insert", add, single_statement=True)


def get_modify_flush(note_id: uuid.UUID) -> OrmUnit:
    def modify(session: Session) -> None:
        note = session.get_one(Note, note_id)
        note.body = f"modified {uuid.uuid4()}"

    return OrmUnit("ORM get-modify-flush update", modify)


def get_and_delete(ids: list[uuid.UUID]) -> OrmUnit:
    """Deletes one note of `ids` per run (the bench seeds enough of them first)."""

    def delete(session: Session) -> None:
        session.delete(session.get_one(Note, ids.pop()))

    return OrmUnit("ORM get + delete", delete)


def new_note_ids(session: Session, count: int) -> list[uuid.UUID]:
    """`count` notes for the delete row, in one statement."""
    notes = [_expiring(f"bench orm delete {uuid.uuid4()}") for _ in range(count)]
    session.add_all(notes)
    session.flush()
    return [note.id for note in notes]
