"""Your tables, as SQLAlchemy ORM models on Base; `make revision MESSAGE="..."` writes their migration."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """The app's models (alembic.ini's target_metadata); none yet."""
