"""idempotency_keys: keys kept 24 h with their first answer (what schema/0003_idempotency_keys.sql created)

Revision ID: 0003_idempotency_keys
Revises: 0001_notes
Create Date: 2026-12-07

Keys outlive their notes: a retry after the note was deleted, expired or purged replays the stored answer instead of
creating the note again. The note's fields are copied, not referenced (no foreign key).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_idempotency_keys"
down_revision: str | Sequence[str] | None = "0001_notes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The SQL file this revision reproduces, as the numbered-SQL runner's ledger recorded it: a database that runner made
# is stamped at this revision instead of running it (migrations/env.py).
LEGACY_SQL_CHECKSUM = "f01badaf4b2ea56d4608696a259525e279d2f6b4e93bc191b05cd341d4af6e41"


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("note_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("char_length(key) BETWEEN 1 AND 255", name=op.f("idempotency_keys_key_check")),
        sa.PrimaryKeyConstraint("key", name=op.f("idempotency_keys_pkey")),
    )
    op.create_index(op.f("idempotency_keys_expires_at_idx"), "idempotency_keys", ["expires_at"])
    # Keys recorded on notes start a fresh window now.
    op.execute(
        """
        INSERT INTO idempotency_keys
            (key, request_hash, note_id, title, body, note_created_at, note_expires_at, expires_at)
        SELECT idempotency_key, request_hash, id, title, body, created_at, expires_at, now() + interval '24 hours'
        FROM notes
        WHERE idempotency_key IS NOT NULL
        ON CONFLICT (key) DO NOTHING
        """
    )


def downgrade() -> None:
    # The keys of notes that still exist are on the notes themselves (until the next revision drops those columns).
    op.drop_table("idempotency_keys")
