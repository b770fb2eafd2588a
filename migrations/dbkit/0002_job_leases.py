"""job_leases: the overlap guard of scheduled jobs (what lib/dbkit/schema/0002_job_leases.sql created)

Revision ID: 0002_job_leases
Revises:
Create Date: 2026-12-07

A run takes the lease with one atomic upsert that only succeeds when the previous lease has lapsed, and gives it back
when done (lib/dbkit/leases.py); a crashed run blocks others only until locked_until. Works through a transaction
pooler, where session advisory locks do not.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_job_leases"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The SQL file this revision reproduces, as the numbered-SQL runner's ledger recorded it: a database that runner made
# is stamped at this revision instead of running it (migrations/env.py).
LEGACY_SQL_CHECKSUM = "b2860676789646c308088b57af4376897351a268153436806c5a6809867c77b3"


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("job_leases_pkey")),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
