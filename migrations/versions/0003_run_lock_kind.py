"""Each run records the kind of lock that guards it (and where, without credentials).

Every later command uses the run's own lock kind instead of guessing it from its own configuration:
a shell with a different broker setting can no longer take a second, unrelated lock on a live run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lock_kind", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("lock_servers", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lock_servers")
        batch.drop_column("lock_kind")
