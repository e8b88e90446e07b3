"""Frozen records returned by the store: plain values, never ORM objects.

One record per entity for reading (:class:`CaseRecord`, :class:`GpuRecord`), each made
from its ORM row by one mapper; :func:`case_facts`/:func:`gpu_facts` give the pure core's
input type (:class:`~mqi_communicator.statemachine.CaseFacts`) from a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath

from ..statemachine import CaseFacts, CaseState, Evidence, GpuFacts, GpuState
from .models import Case, CaseTransition, GpuResource

__all__ = [
    "CaseRecord",
    "GpuRecord",
    "TransitionRecord",
    "case_facts",
    "case_record",
    "gpu_facts",
    "gpu_record",
    "transition_record",
]


@dataclass(frozen=True)
class CaseRecord:
    """A case as saved. ``name`` is the last component of ``path``."""

    id: int
    path: str
    name: str
    status: CaseState
    progress: int
    attempt: int
    label: str | None
    job_id: str | None
    remote_dir: str | None
    host: str | None
    gpu_name: str | None
    failure_reason: str | None
    cancel_requested: bool
    kill_requested_at: datetime | None
    kill_reason: str | None
    transient_failures: int
    next_attempt_at: datetime | None
    created_at: datetime
    status_updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    version: int
    attempt_token: str | None = None
    job_origin: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    #: Consecutive local errors since the case last moved forward (engine/fault.py).
    local_failures: int = 0
    #: Consecutive waits for an unwritable results disk (they never fail the case).
    storage_waits: int = 0
    #: The last local or retrieval error, or why the case waits.
    last_error: str | None = None
    fingerprint: str | None = None
    remote_done: str | None = None


@dataclass(frozen=True)
class GpuRecord:
    """A GPU as saved. ``job_*`` describe the job we placed on it (kept through zombie)."""

    name: str
    host: str | None
    status: GpuState
    case_id: int | None
    job_label: str | None
    job_id: str | None
    job_dir: str | None
    offline_requested: bool
    kill_requested_at: datetime | None
    next_check_at: datetime | None
    status_updated_at: datetime
    version: int
    job_token: str | None = None
    job_origin: str | None = None
    quarantined_case_id: int | None = None
    #: Consecutive local errors of the GPU's own checks (a zombie's; engine/fault.py).
    local_failures: int = 0
    #: The last of them ("stage: error").
    last_error: str | None = None
    #: The check is not tried before then (the backoff of those errors).
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class TransitionRecord:
    """One audit row. ``attempt``/``label`` are the case's values after a case move."""

    id: int
    at: datetime
    entity: str
    case_id: int | None
    gpu_name: str | None
    from_state: str
    to_state: str
    trigger: str
    evidence: Evidence | None
    detail: str
    attempt: int | None = None
    label: str | None = None


def case_record(row: Case) -> CaseRecord:
    """Snapshot an ORM case row."""
    return CaseRecord(
        id=row.id,
        path=row.path,
        name=PurePath(row.path).name,
        status=CaseState(row.status),
        progress=row.progress,
        attempt=row.attempt,
        label=row.label,
        job_id=row.job_id,
        remote_dir=row.remote_dir,
        host=row.host,
        gpu_name=row.gpu_name,
        failure_reason=row.failure_reason,
        cancel_requested=bool(row.cancel_requested),
        kill_requested_at=row.kill_requested_at,
        kill_reason=row.kill_reason,
        transient_failures=row.transient_failures,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        status_updated_at=row.status_updated_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        version=row.version,
        attempt_token=row.attempt_token,
        job_origin=row.job_origin,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        local_failures=row.local_failures,
        storage_waits=row.storage_waits,
        last_error=row.last_error,
        fingerprint=row.fingerprint,
        remote_done=row.remote_done,
    )


def gpu_record(row: GpuResource) -> GpuRecord:
    """Snapshot an ORM GPU row."""
    return GpuRecord(
        name=row.name,
        host=row.host,
        status=GpuState(row.status),
        case_id=row.assigned_case_id,
        job_label=row.job_label,
        job_id=row.job_id,
        job_dir=row.job_dir,
        offline_requested=bool(row.offline_requested),
        kill_requested_at=row.kill_requested_at,
        next_check_at=row.next_check_at,
        status_updated_at=row.status_updated_at,
        version=row.version,
        job_token=row.job_token,
        job_origin=row.job_origin,
        quarantined_case_id=row.quarantined_case_id,
        local_failures=row.local_failures,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
    )


def case_facts(case: CaseRecord) -> CaseFacts:
    """What the machines and the engine's decisions see of a case."""
    return CaseFacts(
        case_id=case.id,
        state=case.status,
        label=case.label,
        attempt=case.attempt,
        job_id=case.job_id,
        started_at=case.started_at,
        kill_requested_at=case.kill_requested_at,
        kill_reason=case.kill_reason,
        cancel_requested=case.cancel_requested,
        transient_failures=case.transient_failures,
        local_failures=case.local_failures,
        gpu_name=case.gpu_name,
    )


def gpu_facts(gpu: GpuRecord) -> GpuFacts:
    """What the machines and the zombie decisions see of a GPU."""
    return GpuFacts(
        name=gpu.name,
        state=gpu.status,
        case_id=gpu.case_id,
        job_label=gpu.job_label,
        offline_requested=gpu.offline_requested,
        job_id=gpu.job_id,
        kill_requested_at=gpu.kill_requested_at,
    )


def transition_record(row: CaseTransition) -> TransitionRecord:
    """Snapshot an ORM audit row, decoding its evidence."""
    return TransitionRecord(
        id=row.id,
        at=row.at,
        entity=row.entity,
        case_id=row.case_id,
        gpu_name=row.gpu_name,
        from_state=row.from_state,
        to_state=row.to_state,
        trigger=row.trigger,
        evidence=Evidence.from_json(row.evidence) if row.evidence else None,
        detail=row.detail,
        attempt=row.attempt,
        label=row.label,
    )
