"""The notification outbox: one row per event, written with the transition it reports.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

``hook_outbox`` rows are inserted in the same transaction as the case or GPU transition
(case failed/completed, GPU turned zombie/recovered) and delivered to the configured hooks
after the commit, so an event survives a crash between the two (at-least-once).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hook_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("done_hooks", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_hook_outbox_event_id")),
    )
    op.create_index(
        "ix_hook_outbox_status_next_attempt_at",
        "hook_outbox",
        ["status", "next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_hook_outbox_status_next_attempt_at", table_name="hook_outbox")
    op.drop_table("hook_outbox")
