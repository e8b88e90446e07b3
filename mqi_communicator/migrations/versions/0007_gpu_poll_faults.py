"""GPU and host-poll fault isolation, persisted: failure count, last error, next attempt.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

* ``gpu_resources.local_failures`` / ``last_error`` / ``next_attempt_at``: a GPU's own
  checks (a zombie's) that raised locally, as the cases' columns of 0006; reset when the
  check succeeds or the GPU leaves ``zombie``.
* ``host_health.poll_failures`` / ``poll_error`` / ``poll_next_at``: a host that answers
  but whose poll raised locally (a bug in an adapter); reset by the next good poll.

Before this, both lived only in the engine's memory: other processes could not see
them and a restart forgot the backoff. See :mod:`mqi_communicator.engine.fault`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gpu_resources") as batch:
        batch.add_column(
            sa.Column("local_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("host_health") as batch:
        batch.add_column(
            sa.Column("poll_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("poll_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("poll_next_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("host_health") as batch:
        batch.drop_column("poll_next_at")
        batch.drop_column("poll_error")
        batch.drop_column("poll_failures")
    with op.batch_alter_table("gpu_resources") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("last_error")
        batch.drop_column("local_failures")
