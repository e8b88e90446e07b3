"""Initial schema: cases, gpu_resources, case_transitions; adopts a legacy database.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

A fresh database gets the three tables. A database made by the original MQI
Communicator (tables ``cases(case_id, case_path, status, progress, pueue_group,
pueue_task_id, submitted_at, completed_at, status_updated_at)`` and
``gpu_resources(pueue_group, status, assigned_case_id)``) is ADOPTED: its tables are
renamed aside, the new schema is created, every row is copied keeping its id (and
every GPU keeps its ``pueue_group`` as its name), an ``adopt`` audit row is written for
each, and the old tables are dropped. Downgrading below 0001 drops everything; it does
not restore the legacy layout.

Two legacy cases with the same ``case_path`` (a legacy file made without its UNIQUE
constraint) are REFUSED before anything changes: the new schema keeps one case per
folder, and which row is the real one is the operator's call. The error names every
duplicated path with its case ids (``migrations/legacy_checks.py``).

Legacy case status -> new status (case-insensitive, surrounding spaces ignored):

* ``pending``, ``submitted``, ``queued``, ``new`` -> ``submitted`` (waits for a GPU).
* ``running``, ``processing``, and ``submitting`` WITH a ``pueue_task_id`` -> ``running``
  on its GPU (the GPU row pointing at the case, else its ``pueue_group``), with
  ``job_id`` = the task id as text and ``label`` = ``mqic_case_<case_id>``, the label
  the original system gave its Pueue task. The GPU becomes ``assigned`` to it with the
  same ``job_label`` and ``job_id``. Host and job origin are not columns at this
  revision: 0002 marks the job ``legacy`` and the engine resolves the host at start (the
  configured host of the GPU whose ``pueue_group`` matches). If that GPU is a zombie,
  or already holds another case, or there is no GPU, or no task id, the case becomes
  ``failed`` with a reason saying so, and its GPU (if any) becomes or stays a
  ``zombie``: a job may still run there.
* ``submitting`` WITHOUT a task id -> ``submitted`` (attempt 2: the submit is retried);
  its GPU becomes a ``zombie`` because the old submit may have reached Pueue.
* ``postprocessing``, ``downloading`` -> ``retrieving``.
* ``completed``, ``done``, ``success`` -> ``completed``.
* ``failed``, ``error`` -> ``failed`` (reason: ``legacy status 'failed'``).
* ``cancelled``, ``canceled`` -> ``cancelled``.
* anything else, including ``unknown`` and NULL -> ``failed``, with ``failure_reason``
  naming the legacy status. Nothing is dropped.

Legacy GPU status -> new status:

* ``available`` -> ``available`` (or ``assigned`` if a running case above claims it).
* ``assigned`` -> ``assigned`` if its case is adopted as running on it; otherwise
  ``zombie`` (the job may still run): a GPU is never freed without evidence.
* ``zombie`` -> ``zombie``, keeping its job: ``job_id`` = its case's ``pueue_task_id``
  as text, ``job_label`` = ``mqic_case_<that case>``. Any other status -> ``zombie``.

Zombies hold no case (``assigned_case_id`` NULL); their job fields say what to look for
(0002 records the case as ``quarantined_case_id``). A zombie whose case is unknown keeps
no label: no evidence can match it, so only ``gpus release --confirm-job-gone`` frees it.

Timestamps: ISO-8601 text with an offset (``2024-03-05T14:22:10+09:00``) is converted to
UTC; text without an offset is taken as +09:00, the legacy system's local zone; numbers
are Unix seconds. ``created_at`` = ``submitted_at`` (else ``status_updated_at``, else the
migration time). ``completed_at`` is kept for terminal cases only. Progress is clamped to
0..100; completed cases get 100.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

import mqi_communicator.migrations.legacy_adoption as legacy_adoption
from mqi_communicator.migrations.legacy_checks import refuse_duplicate_paths

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create_schema() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("job_id", sa.String(length=100), nullable=True),
        sa.Column("remote_dir", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("gpu_name", sa.String(length=200), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("kill_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kill_reason", sa.String(length=16), nullable=True),
        sa.Column("transient_failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("path", name=op.f("uq_cases_path")),
    )
    op.create_index(op.f("ix_cases_status"), "cases", ["status"], unique=False)
    op.create_table(
        "gpu_resources",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assigned_case_id", sa.Integer(), nullable=True),
        sa.Column("job_label", sa.String(length=200), nullable=True),
        sa.Column("job_id", sa.String(length=100), nullable=True),
        sa.Column("job_dir", sa.Text(), nullable=True),
        sa.Column("offline_requested", sa.Boolean(), nullable=False),
        sa.Column("kill_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assigned_case_id"],
            ["cases.id"],
            name=op.f("fk_gpu_resources_assigned_case_id_cases"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_gpu_resources")),
        sa.UniqueConstraint("assigned_case_id", name=op.f("uq_gpu_resources_assigned_case_id")),
    )
    op.create_index(op.f("ix_gpu_resources_status"), "gpu_resources", ["status"], unique=False)
    op.create_table(
        "case_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entity", sa.String(length=8), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("gpu_name", sa.String(length=200), nullable=True),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_transitions_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_transitions")),
    )
    op.create_index(
        "ix_case_transitions_case_id_id", "case_transitions", ["case_id", "id"], unique=False
    )
    op.create_index(
        "ix_case_transitions_gpu_name_id", "case_transitions", ["gpu_name", "id"], unique=False
    )


def upgrade() -> None:
    legacy = None if context.is_offline_mode() else legacy_adoption.detect(op.get_bind())
    if legacy is not None and legacy.cases:
        refuse_duplicate_paths(op.get_bind())  # before any change: a refusal changes nothing
    if legacy is not None:
        legacy_adoption.move_aside(legacy)
    _create_schema()
    if legacy is not None:
        legacy_adoption.adopt(op.get_bind(), legacy)
        legacy_adoption.drop_aside(legacy)


def downgrade() -> None:
    op.drop_index("ix_case_transitions_gpu_name_id", table_name="case_transitions")
    op.drop_index("ix_case_transitions_case_id_id", table_name="case_transitions")
    op.drop_table("case_transitions")
    op.drop_index(op.f("ix_gpu_resources_status"), table_name="gpu_resources")
    op.drop_table("gpu_resources")
    op.drop_index(op.f("ix_cases_status"), table_name="cases")
    op.drop_table("cases")
