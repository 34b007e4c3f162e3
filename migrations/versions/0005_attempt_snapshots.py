"""Each attempt records the sha256 of the workflow file's bytes its snapshot was loaded from.

A resume without ``-c`` warns when that file changed since; with the digest, an unchanged file is
recognised by hashing its bytes instead of loading and checking it whole (100,000 jobs: ~5 s).
Attempts recorded before have none: their file is loaded as before.

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


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("workflow_sha256")
