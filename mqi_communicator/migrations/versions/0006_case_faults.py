"""Per-case fault isolation: local failure count, results-disk waits, last error.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30

* ``cases.local_failures``: consecutive local errors (I/O, a bug, a refused step) since
  the case last moved forward; at ``engine.max_local_failures`` the case fails.
* ``cases.storage_waits``: consecutive waits for a full or unwritable results disk; they
  only drive the backoff, they never fail the case.
* ``cases.last_error``: the last local or retrieval error, or why the case waits.

See :mod:`mqi_communicator.engine.fault`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("local_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("storage_waits", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("last_error")
        batch.drop_column("storage_waits")
        batch.drop_column("local_failures")
