"""Typed SQLAlchemy 2 models: cases, GPUs, the audit trail, the hook outbox, host health.

The models are the single source of the schema: Alembic's migrations are checked
against them (``alembic check`` must find no drift). Nothing outside the store touches
them; callers get frozen records (:mod:`.records`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "Case",
    "CaseTransition",
    "GpuResource",
    "HookOutbox",
    "HostHealthRow",
    "UtcDateTime",
]

# Deterministic constraint names: Alembic batch mode on SQLite recreates tables and
# must be able to name (and drop) constraints; PostgreSQL needs names to alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Stores UTC (naive on SQLite, ``timestamptz`` on PostgreSQL); returns aware UTC.

    Naive values are refused on the way in: a naive time is a bug in the caller.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass timezone-aware UTC times")
        utc = value.astimezone(UTC)
        # SQLite has no time zones: keep naive UTC text so values sort and compare.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            value = datetime.fromisoformat(str(value))
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: The states a case folder may have at most one case in (see ``uq_cases_live_path``).
LIVE_CASE_PREDICATE = "status NOT IN ('completed', 'failed', 'cancelled')"


class Case(Base):
    """One QA case: a folder to run on a GPU.

    A folder dropped again after its case ended is a new case (intake/fingerprint.py),
    so a path may have several rows, but at most one that is not ended: the partial
    unique index ``uq_cases_live_path`` (SQLite and PostgreSQL both have them).
    """

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text)
    # Indexed: the engine's tick lists the live states among many finished cases.
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    label: Mapped[str | None] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(String(100))
    remote_dir: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(200))
    gpu_name: Mapped[str | None] = mapped_column(String(200))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    kill_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    kill_reason: Mapped[str | None] = mapped_column(String(16))
    transient_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The engine's fault boundary (engine/fault.py): consecutive local errors since the
    # case last moved forward, waits for an unwritable results disk, and the last error
    # or wait reason, shown by `cases show` and `status`.
    local_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    storage_waits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status_updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The attempt's secret: set with the label at claim, before anything is sent; the
    # wrapper's markers and every process of the job carry it (see remote/job/markers.py).
    attempt_token: Mapped[str | None] = mapped_column(String(64))
    # "legacy" for a job adopted from the original system (label mqic_case_<id>, no
    # wrapper, no markers); NULL for our own wrapper jobs.
    job_origin: Mapped[str | None] = mapped_column(String(16))
    # A transfer's lease: the engine working on the case renews it; another engine may
    # recover the case only once it has expired.
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: sha256 of the folder's names, sizes and mtimes at registration; NULL: registered
    #: before fingerprints existed (then "changed" means a mtime after ``created_at``).
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: The ``remote_dir`` whose retention (engine.remote_retention) was settled: removed,
    #: or kept by the setting. Differs from ``remote_dir`` while that is still to do.
    remote_done: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)

    # Optimistic locking: every ORM UPDATE says "WHERE version = <loaded>" and bumps it.
    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_cases_path", "path"),
        Index(
            "uq_cases_live_path",
            "path",
            unique=True,
            sqlite_where=text(LIVE_CASE_PREDICATE),
            postgresql_where=text(LIVE_CASE_PREDICATE),
        ),
    )


class GpuResource(Base):
    """One schedulable GPU slot, named ``host/group`` (a Pueue group, a Slurm GRES, ...)."""

    __tablename__ = "gpu_resources"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    # UNIQUE (NULLs allowed many times on both backends): no GPU ever holds two cases.
    assigned_case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id"), unique=True, default=None
    )
    job_label: Mapped[str | None] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(String(100))
    job_dir: Mapped[str | None] = mapped_column(Text)
    job_token: Mapped[str | None] = mapped_column(String(64))
    job_origin: Mapped[str | None] = mapped_column(String(16))
    # A zombie keeps the case whose job it quarantines (not unique: that case may be
    # retried on another GPU meanwhile); cleared on recovery.
    quarantined_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    offline_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    kill_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_check_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The engine's fault boundary for the GPU's own checks (a zombie's; engine/fault.py):
    # consecutive local errors, the last one, and when the check is tried again.
    local_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status_updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}


class CaseTransition(Base):
    """The audit trail: one row per transition (or note) of a case or a GPU."""

    __tablename__ = "case_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    entity: Mapped[str] = mapped_column(String(8))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    gpu_name: Mapped[str | None] = mapped_column(String(200))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")
    # The case's attempt and label after the move, so a replay can rebuild them.
    attempt: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_case_transitions_case_id_id", "case_id", "id"),
        Index("ix_case_transitions_gpu_name_id", "gpu_name", "id"),
    )


class HookOutbox(Base):
    """One notification event, written in the transaction of the transition it reports.

    The engine's delivery loop sends it to the configured hooks after the commit (see
    :mod:`mqi_communicator.notify`); a crash between the two loses nothing.
    """

    __tablename__ = "hook_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Stable across retries and restarts: receivers de-duplicate on it.
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: The JSON document hooks receive (without the per-delivery fields).
    payload: Mapped[str] = mapped_column(Text)
    #: pending | delivered | failed (gave up) | skipped (no hook wants it)
    status: Mapped[str] = mapped_column(String(16))
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Failed hook calls (one per hook per attempt): a counter for /metrics.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: Names of the hooks that already accepted it (comma-separated): not sent again.
    done_hooks: Mapped[str] = mapped_column(Text, default="")
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_hook_outbox_status_next_attempt_at", "status", "next_attempt_at"),)


class HostHealthRow(Base):
    """A host's health as the engine last saw it; written only when it changes.

    Read by every view (``status``, ``gpus list``, ``top``, the web console) in other
    processes than the engine's (see :mod:`.host_health`).
    """

    __tablename__ = "host_health"

    host: Mapped[str] = mapped_column(String(200), primary_key=True)
    up: Mapped[bool] = mapped_column(Boolean)
    #: When it last went down, or came (back) up.
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    #: Consecutive failures (0 while up).
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: The last error seen; kept after recovery (why it was down).
    last_error: Mapped[str | None] = mapped_column(Text)
    #: While down: when the engine tries it again (its backoff).
    next_retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: The host answers but its poll raised locally (a bug in an adapter): consecutive
    #: failures, the last error, and when the engine polls it again (engine/fault.py).
    poll_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    poll_error: Mapped[str | None] = mapped_column(Text)
    poll_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
