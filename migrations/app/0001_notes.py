"""notes, with the Idempotency-Key of the request that created each (what schema/0001_notes.sql created)

Revision ID: 0001_notes
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_notes"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The SQL file this revision reproduces, as the numbered-SQL runner's ledger recorded it: a database that runner made
# is stamped at this revision instead of running it (migrations/env.py).
LEGACY_SQL_CHECKSUM = "75b53c759d01d1b341418d70d6b00131798b5762342f13b024a1ae1325165a6b"


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.CheckConstraint("char_length(title) BETWEEN 1 AND 200", name=op.f("notes_title_check")),
        sa.CheckConstraint("char_length(body) <= 10000", name=op.f("notes_body_check")),
        sa.CheckConstraint("char_length(idempotency_key) BETWEEN 1 AND 255", name=op.f("notes_idempotency_key_check")),
        sa.CheckConstraint("(idempotency_key IS NULL) = (request_hash IS NULL)", name=op.f("notes_check")),
        sa.PrimaryKeyConstraint("id", name=op.f("notes_pkey")),
        sa.UniqueConstraint("idempotency_key", name=op.f("notes_idempotency_key_key")),
    )
    op.create_index(
        "notes_created_at_id_idx",
        "notes",
        [sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    )
    op.create_index("notes_expires_at_idx", "notes", ["expires_at"], postgresql_where=sa.text("expires_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_table("notes")
