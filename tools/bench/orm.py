"""The bench's ORM units: the same Session code run through the template's run_in_session and a guide's Session.

A declarative model of the sample's `notes` table, kept here for the bench's ORM rows (the sample app's own models
replace it once the app moves to the ORM). Each unit is a function of a Session; a profile decides how the Session
is opened and committed (tools.bench.profiles: `orm`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

PAGE = 20
# Notes the bench writes expire, so repeated runs leave nothing behind for long.
TTL_SECONDS = 600


class _Base(DeclarativeBase):
    pass


class BenchNote(_Base):
    """The sample's notes table (lib/sample_app/schema/0001_notes.sql), as the bench's ORM units see it."""

    __tablename__ = "notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    title: Mapped[str]
    body: Mapped[str] = mapped_column(server_default="")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime | None]


def _expiring(title: str) -> BenchNote:
    return BenchNote(title=title, expires_at=datetime.now(UTC) + timedelta(seconds=TTL_SECONDS))


@dataclass(frozen=True)
class OrmUnit:
    """One ORM unit of work: what it does with the Session, and what the template's run_in_session is told."""

    name: str
    work: Callable[[Session], Any]
    single_statement: bool = False
    read_only: bool = False


def get_by_key(note_id: uuid.UUID) -> OrmUnit:
    return OrmUnit("ORM get by key", lambda s: s.get(BenchNote, note_id), single_statement=True, read_only=True)


def select_page() -> OrmUnit:
    def page(session: Session) -> list[BenchNote]:
        newest = select(BenchNote).order_by(BenchNote.created_at.desc(), BenchNote.id.desc()).limit(PAGE)
        return list(session.scalars(newest))

    return OrmUnit("ORM select page", page, single_statement=True, read_only=True)


def insert_one() -> OrmUnit:
    def add(session: Session) -> BenchNote:
        note = _expiring(f"bench orm {uuid.uuid4()}")
        session.add(note)
        return note

    return OrmUnit("ORM one-row insert", add, single_statement=True)


def get_modify_flush(note_id: uuid.UUID) -> OrmUnit:
    def modify(session: Session) -> None:
        note = session.get_one(BenchNote, note_id)
        note.body = f"modified {uuid.uuid4()}"

    return OrmUnit("ORM get-modify-flush update", modify)


def get_and_delete(ids: list[uuid.UUID]) -> OrmUnit:
    """Deletes one note of `ids` per run (the bench seeds enough of them first)."""

    def delete(session: Session) -> None:
        session.delete(session.get_one(BenchNote, ids.pop()))

    return OrmUnit("ORM get + delete", delete)


def new_note_ids(session: Session, count: int) -> list[uuid.UUID]:
    """`count` notes for the delete row, in one statement."""
    notes = [_expiring(f"bench orm delete {uuid.uuid4()}") for _ in range(count)]
    session.add_all(notes)
    session.flush()
    return [note.id for note in notes]
