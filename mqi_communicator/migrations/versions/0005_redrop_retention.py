"""A folder may run again: fingerprints, one LIVE case per path; remote retention.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

* ``cases.fingerprint``: sha256 of the folder's names, sizes and mtimes at registration
  (intake/fingerprint.py). Legacy rows keep NULL: for them "new content" means a mtime
  later than the case's ``created_at``.
* ``uq_cases_path`` (one case per path, ever) becomes ``uq_cases_live_path``: a partial
  unique index over the cases that have not ended, so a folder dropped again after its
  case ended is a new row, and two live cases of one folder stay impossible. SQLite
  (3.8+) and PostgreSQL both have partial indexes; ``ix_cases_path`` serves lookups.
* ``cases.remote_done``: the remote directory whose retention was settled. Cases that
  ended before this revision are marked settled (their remote folders are left alone:
  nobody asked for them to go when they ended).

Downgrade refuses (nothing changed) while a path has several cases: the old schema
cannot hold them; keep one row per path first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "status NOT IN ('completed', 'failed', 'cancelled')"


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("remote_done", sa.Text(), nullable=True))
        batch.drop_constraint("uq_cases_path", type_="unique")
    op.create_index("ix_cases_path", "cases", ["path"], unique=False)
    op.create_index(
        "uq_cases_live_path",
        "cases",
        ["path"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.execute(
        "UPDATE cases SET remote_done = remote_dir "
        "WHERE status IN ('completed', 'failed', 'cancelled')"
    )


def downgrade() -> None:
    dupes = (
        op.get_bind()
        .execute(sa.text("SELECT path FROM cases GROUP BY path HAVING COUNT(*) > 1 LIMIT 5"))
        .scalars()
        .all()
    )
    if dupes:
        raise RuntimeError(
            "cannot downgrade below 0005: these folders have several cases (dropped again "
            f"after their case ended): {', '.join(repr(p) for p in dupes)}; keep one row "
            "per path first"
        )
    op.drop_index("uq_cases_live_path", table_name="cases")
    op.drop_index("ix_cases_path", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.create_unique_constraint("uq_cases_path", ["path"])
        batch.drop_column("remote_done")
        batch.drop_column("fingerprint")
