"""The app's tables as declarative models: `alembic revision --autogenerate` writes the app's migrations from them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, MetaData, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lib.dbkit.models import POSTGRES_NAMING_CONVENTION, TYPE_ANNOTATION_MAP

# The size limits of a note and of an Idempotency-Key: the CHECK constraints below keep them for every writer, and
# the API's request models (lib/sample_app/api.py) use the same numbers to answer 422 before the database is asked.
MAX_TITLE = 200
MAX_BODY = 10_000
MAX_IDEMPOTENCY_KEY = 255


class Base(DeclarativeBase):
    """Declarative base of the app's tables (the kit's job_leases lives on the kit's own MetaData)."""

    metadata = MetaData(naming_convention=POSTGRES_NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP


class Note(Base):
    """A note; it disappears from reads once `expires_at` has passed, and the scheduled purge deletes it."""

    __tablename__ = "notes"
    __table_args__ = (
        CheckConstraint(f"char_length(title) BETWEEN 1 AND {MAX_TITLE}", name="title"),
        CheckConstraint(f"char_length(body) <= {MAX_BODY}", name="body"),
        # The purge only ever looks at notes that can expire.
        Index("notes_expires_at_idx", "expires_at", postgresql_where=text("expires_at IS NOT NULL")),
    )

    # Made on the client (uuid4), so the ORM knows each new row's key before the INSERT and batches many rows into
    # one statement; the server default stays for rows inserted by SQL that names no id.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4, server_default=func.gen_random_uuid())
    title: Mapped[str]
    body: Mapped[str] = mapped_column(default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime | None]


# Keyset pagination, newest first: WHERE (created_at, id) < (:c, :i) ORDER BY created_at DESC, id DESC.
Index("notes_created_at_id_idx", Note.created_at.desc(), Note.id.desc())


class IdempotencyKey(Base):
    """An Idempotency-Key kept for its 24 h window with the answer its first request got (a copy of the note).

    The note's fields are copied, not referenced (no foreign key): the note may be deleted, expire or be purged while
    its key is kept, and a retry still replays the first answer instead of creating the note again.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (CheckConstraint(f"char_length(key) BETWEEN 1 AND {MAX_IDEMPOTENCY_KEY}", name="key"),)

    key: Mapped[str] = mapped_column(primary_key=True)
    request_hash: Mapped[str]
    note_id: Mapped[uuid.UUID]
    title: Mapped[str]
    body: Mapped[str]
    note_created_at: Mapped[datetime]
    note_expires_at: Mapped[datetime | None]
    # The purge deletes expired keys in expiry order.
    expires_at: Mapped[datetime] = mapped_column(index=True)
