"""drop notes.idempotency_key and notes.request_hash (idempotency_keys holds the keys since 0003)

Revision ID: 49d53a74a2f5
Revises: 0003_idempotency_keys
Create Date: 2026-12-07 14:23:34.262871

0003 kept the columns for code still writing them during a rollout; no deployed code reads or writes them since.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "49d53a74a2f5"
down_revision: str | Sequence[str] | None = "0003_idempotency_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A key written on its note by code still running 0001's version after 0003 moved the others: 0003's copy again,
    # so no key is lost (those keys start a fresh window now).
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
    # Their CHECK constraints (notes_idempotency_key_check, notes_check) go with the columns.
    op.drop_constraint(op.f("notes_idempotency_key_key"), "notes", type_="unique")
    op.drop_column("notes", "idempotency_key")
    op.drop_column("notes", "request_hash")


def downgrade() -> None:
    op.add_column("notes", sa.Column("idempotency_key", sa.Text(), nullable=True))
    op.add_column("notes", sa.Column("request_hash", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("notes_idempotency_key_check"), "notes", "char_length(idempotency_key) BETWEEN 1 AND 255"
    )
    op.create_check_constraint(op.f("notes_check"), "notes", "(idempotency_key IS NULL) = (request_hash IS NULL)")
    op.create_unique_constraint(op.f("notes_idempotency_key_key"), "notes", ["idempotency_key"])
    # Each note gets back the key that created it, while that key is still kept.
    op.execute(
        """
        UPDATE notes SET idempotency_key = k.key, request_hash = k.request_hash
        FROM idempotency_keys k
        WHERE k.note_id = notes.id
        """
    )
