"""Run parameters, logical date and data interval, pass_env values; rendered commands; slot failures;
where each try's complete output is (the log store) and its size; the notification outbox.

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
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=30), nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("sink", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=300), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("event_key", name=op.f("uq_notifications_event_key")),
    )
    op.create_index("ix_notifications_status_next_try_at", "notifications", ["status", "next_try_at"])
    op.create_index("ix_notifications_run_id", "notifications", ["run_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("logical_date", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("data_interval_start", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("data_interval_end", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ds", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("pass_env", sa.JSON(), nullable=True))
        batch.create_index("ix_runs_application_name_ds", ["application_name", "ds"])
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("end_reason", sa.String(length=50), nullable=True))
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("command", sa.JSON(), nullable=True))
    with op.batch_alter_table("job_tries") as batch:
        batch.add_column(sa.Column("log_uri", sa.Text(), nullable=True))
        batch.add_column(sa.Column("stdout_bytes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("stderr_bytes", sa.Integer(), nullable=True))
    with op.batch_alter_table("schedule_slots") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_table("notifications")
    with op.batch_alter_table("schedule_slots") as batch:
        batch.drop_column("reason")
    with op.batch_alter_table("job_tries") as batch:
        batch.drop_column("stderr_bytes")
        batch.drop_column("stdout_bytes")
        batch.drop_column("log_uri")
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("command")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("end_reason")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_application_name_ds")
        for name in ("pass_env", "timezone", "ds", "data_interval_end", "data_interval_start"):
            batch.drop_column(name)
        batch.drop_column("logical_date")
        batch.drop_column("params")
