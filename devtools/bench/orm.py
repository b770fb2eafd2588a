"""The bench's ORM units: the same Session code run through the template's run_in_session and a guide's Session.

Each unit is a function of a Session on the bench's own model and table (`Item`, not the app's: the bench keeps
working whatever app replaces the sample); a profile decides how the Session is opened and committed
(devtools.bench.profiles: `orm`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Index, delete, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

PAGE = 20


class _Base(DeclarativeBase):
    pass


class Item(_Base):
    """A row shaped like a typical resource: client-side key, server-side defaults returned by the INSERT."""

    __tablename__ = "bench_orm_items"
    __table_args__ = (Index("bench_orm_items_created_at_id_idx", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    title: Mapped[str]
    body: Mapped[str] = mapped_column(server_default="")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


def _new(title: str) -> Item:
    return Item(title=title)


@dataclass(frozen=True)
class OrmUnit:
    """One ORM unit of work: what it does with the Session, and what the template's run_in_session is told."""

    name: str
    work: Callable[[Session], Any]
    single_statement: bool = False
    read_only: bool = False


def get_by_key(item_id: uuid.UUID) -> OrmUnit:
    return OrmUnit("ORM get by key", lambda s: s.get(Item, item_id), single_statement=True, read_only=True)


def select_page() -> OrmUnit:
    def page(session: Session) -> list[Item]:
        newest = select(Item).order_by(Item.created_at.desc(), Item.id.desc()).limit(PAGE)
        return list(session.scalars(newest))

    return OrmUnit("ORM select page", page, single_statement=True, read_only=True)


def insert_one() -> OrmUnit:
    def add(session: Session) -> Item:
        item = _new(f"bench orm {uuid.uuid4()}")
        session.add(item)
        return item

    return OrmUnit("ORM one-row insert", add, single_statement=True)


def get_modify_flush(item_id: uuid.UUID) -> OrmUnit:
    def modify(session: Session) -> None:
        item = session.get_one(Item, item_id)
        item.body = f"modified {uuid.uuid4()}"

    return OrmUnit("ORM get-modify-flush update", modify)


def get_and_delete(ids: list[uuid.UUID]) -> OrmUnit:
    """Deletes one row of `ids` per run (prepare() makes enough of them first)."""

    def get_then_delete(session: Session) -> None:
        session.delete(session.get_one(Item, ids.pop()))

    return OrmUnit("ORM get + delete", get_then_delete)


def prepare(session: Session, count: int) -> list[uuid.UUID]:
    """The bench's table (made if missing), emptied, with `count` rows in one statement; their ids."""
    _Base.metadata.create_all(session.connection())
    session.execute(delete(Item))
    items = [_new(f"bench orm {uuid.uuid4()}") for _ in range(count)]
    session.add_all(items)
    session.flush()
    return [item.id for item in items]


def drop(session: Session) -> None:
    """Remove the bench's table (an app's autogenerate would otherwise offer to drop it)."""
    _Base.metadata.drop_all(session.connection())
