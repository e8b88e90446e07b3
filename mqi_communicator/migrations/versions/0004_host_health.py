"""Host health, persisted: up/down, since when, failures, last error, next retry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

The engine keeps each host's backoff in memory and writes ``host_health`` when it
changes (down, still down with a new retry time, up again), so that ``status``,
``gpus list``, ``top`` and the web console, in other processes, can show it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "host_health",
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("up", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_host_health")),
    )


def downgrade() -> None:
    op.drop_table("host_health")
