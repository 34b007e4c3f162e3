"""Run parameters, logical date and data interval, pass_env values; rendered commands; slot failures;
where each try's complete output is (the log store) and its size.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("logical_date", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("data_interval_start", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("data_interval_end", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ds", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("pass_env", sa.JSON(), nullable=True))
        batch.create_index("ix_runs_application_name_ds", ["application_name", "ds"])
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("command", sa.JSON(), nullable=True))
    with op.batch_alter_table("job_tries") as batch:
        batch.add_column(sa.Column("log_uri", sa.Text(), nullable=True))
        batch.add_column(sa.Column("stdout_bytes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("stderr_bytes", sa.Integer(), nullable=True))
    with op.batch_alter_table("schedule_slots") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedule_slots") as batch:
        batch.drop_column("reason")
    with op.batch_alter_table("job_tries") as batch:
        batch.drop_column("stderr_bytes")
        batch.drop_column("stdout_bytes")
        batch.drop_column("log_uri")
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("command")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_application_name_ds")
        for name in ("pass_env", "timezone", "ds", "data_interval_end", "data_interval_start"):
            batch.drop_column(name)
        batch.drop_column("logical_date")
        batch.drop_column("params")
