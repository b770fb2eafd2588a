"""The kit's own table (job_leases) as a declarative model on the kit's own MetaData; Alembic's kit history follows it.

The kit's code reaches the table with hand-written SQL (lib/dbkit/leases.py: one upsert per lease, one statement
per leased batch); this model is the schema's source of truth for `alembic -n dbkit`, and never loaded at runtime.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The names PostgreSQL picks itself when a CREATE TABLE names none: tables made by hand-written SQL and by Alembic
# agree, and every constraint Alembic creates has the name a later revision needs to drop it. A CHECK constraint is
# given the column it checks as its name (name="title" becomes notes_title_check).
POSTGRES_NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
}

# Every timestamp is timestamptz, every string text (PostgreSQL's own advice: no varchar(n), no naive times).
TYPE_ANNOTATION_MAP: dict[Any, Any] = {datetime: DateTime(timezone=True), str: Text()}


class KitBase(DeclarativeBase):
    """Declarative base of the kit's tables; the app has a base and a MetaData of its own."""

    metadata = MetaData(naming_convention=POSTGRES_NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP


class JobLease(KitBase):
    """One scheduled job's lease: who runs it and until when (lib/dbkit/leases.py takes and releases it)."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(primary_key=True)
    holder: Mapped[str]
    locked_until: Mapped[datetime]
