"""Each attempt's workflow snapshot in a table of its own, and the digest of the file it came from.

An attempt's row is updated when it ends; SQLite rewrites a whole row on update, so a snapshot kept
inside it was read and written again at every attempt's end (100,000 jobs: 35 MB, 0.4 s, ~70 MB of a
coordinator's memory and of the WAL). Attempts recorded before keep theirs in their row
(``attempts.workflow_snapshot``); later ones write JSON null there — the column stays NOT NULL, as
making it nullable would copy every attempt's row (SQLite recreates the table) — and readers look
in ``attempt_snapshots`` first.

``attempts.workflow_sha256``: sha256 of the bytes of the workflow file the snapshot was loaded from.
A resume without ``-c`` warns when that file changed since; an unchanged one is recognised by its
digest instead of being loaded and checked whole (100,000 jobs: ~5 s).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("workflow_sha256", sa.String(length=64), nullable=True))
    op.create_table(
        "attempt_snapshots",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id", "attempt_id"], ["attempts.run_id", "attempts.attempt_id"]),
        sa.PrimaryKeyConstraint("run_id", "attempt_id"),
    )


def downgrade() -> None:
    op.drop_table("attempt_snapshots")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("workflow_sha256")
