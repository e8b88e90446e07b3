"""Evidence that belongs to the attempt: token, job origin, transfer lease, zombie's case.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

* ``cases.attempt_token``: the attempt's secret, stored at claim; markers and processes
  count only when they carry it.
* ``cases.job_origin`` / ``gpu_resources.job_origin``: ``legacy`` for jobs adopted from
  the original system (label ``mqic_case_<id>``, no wrapper); NULL for our own.
* ``cases.lease_owner`` / ``cases.lease_expires_at``: the lease a long transfer renews so
  that no other engine takes the case over while it is alive.
* ``gpu_resources.job_token``: the token of the job a GPU holds (kept through zombie).
* ``gpu_resources.quarantined_case_id``: the case whose job a zombie quarantines.

Data: rows adopted from the original system at 0001 and not moved since are marked
``legacy`` (label ``mqic_case_<id>`` filled in when an older 0001 left it empty; a
zombie gets its case); see :mod:`mqi_communicator.migrations.legacy_backfill`.
Downgrade drops the columns; labels written here stay (they are 0001 columns).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

import mqi_communicator.migrations.legacy_backfill as legacy_backfill

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("attempt_token", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("job_origin", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("gpu_resources") as batch:
        batch.add_column(sa.Column("job_token", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("job_origin", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("quarantined_case_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_gpu_resources_quarantined_case_id_cases"),
            "cases",
            ["quarantined_case_id"],
            ["id"],
        )
    if not context.is_offline_mode():
        legacy_backfill.backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("gpu_resources") as batch:
        batch.drop_constraint(
            op.f("fk_gpu_resources_quarantined_case_id_cases"), type_="foreignkey"
        )
        batch.drop_column("quarantined_case_id")
        batch.drop_column("job_origin")
        batch.drop_column("job_token")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
        batch.drop_column("job_origin")
        batch.drop_column("attempt_token")
