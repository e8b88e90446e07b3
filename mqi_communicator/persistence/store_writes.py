"""Write operations of the store. Each takes an explicit ``Session`` inside a write
transaction (the caller commits) and flushes before building its records.

Every status change goes through :func:`~mqi_communicator.statemachine.plan_step`;
its errors propagate before anything is flushed, so a refused step writes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConflictError, NotFoundError
from ..statemachine import CaseFacts, CaseState, Evidence, GpuFacts, GpuState, plan_step
from .effects import CASE_NOTE_FIELDS, GPU_NOTE_FIELDS, CaseInputs, case_effects, gpu_effects
from .models import Case, CaseTransition, GpuResource
from .outbox import enqueue_event
from .records import CaseRecord, GpuRecord, case_record, gpu_record

__all__ = [
    "ClaimPlan",
    "apply_step",
    "claim",
    "register_case",
    "set_gpu_offline",
    "sync_gpus",
    "update_case",
    "update_gpu",
]

#: Decides the job label and remote directory for a case on a GPU (called inside the lock).
ClaimPlan = Callable[[CaseRecord, GpuRecord], tuple[str, str]]


def _lock_case(s: Session, case_id: int) -> Case:
    # FOR UPDATE on PostgreSQL; SQLite ignores it (BEGIN IMMEDIATE already serialises).
    row = s.scalars(select(Case).where(Case.id == case_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFoundError(f"no case with id {case_id}")
    return row


def _lock_gpu(s: Session, name: str) -> GpuResource:
    q = select(GpuResource).where(GpuResource.name == name).with_for_update()
    row = s.scalars(q).one_or_none()
    if row is None:
        raise NotFoundError(f"no GPU named {name!r}")
    return row


def _audit(
    s: Session,
    now: datetime,
    entity: str,
    *,
    case_id: int | None,
    gpu_name: str | None,
    from_state: str,
    to_state: str,
    trigger: str,
    evidence: Evidence | None = None,
    detail: str = "",
    case: Case | None = None,
) -> None:
    s.add(
        CaseTransition(
            at=now,
            entity=entity,
            case_id=case_id,
            gpu_name=gpu_name,
            from_state=from_state,
            to_state=to_state,
            trigger=trigger,
            evidence=evidence.to_json() if evidence is not None else None,
            detail=detail,
            attempt=case.attempt if case is not None else None,
            label=case.label if case is not None else None,
        )
    )
    # Persist first, notify after: an event is committed with its transition or not at all.
    enqueue_event(
        s, now, entity, case_id, gpu_name, from_state, to_state, trigger, evidence, detail, case
    )


def _gpu_facts(gpu: GpuResource, case_id: int | None = None) -> GpuFacts:
    return GpuFacts(
        name=gpu.name,
        state=gpu.status,
        case_id=gpu.assigned_case_id if case_id is None else case_id,
        job_label=gpu.job_label,
        offline_requested=bool(gpu.offline_requested),
    )


def register_case(s: Session, path: str, now: datetime) -> tuple[CaseRecord, bool]:
    """Insert ``path`` as a ``submitted`` case, or return the existing one."""
    existing = s.scalars(select(Case).where(Case.path == path)).one_or_none()
    if existing is not None:
        return case_record(existing), False
    row = Case(
        path=path,
        status=CaseState.SUBMITTED.value,
        progress=0,
        attempt=1,
        cancel_requested=False,
        transient_failures=0,
        created_at=now,
        status_updated_at=now,
    )
    s.add(row)
    s.flush()
    _audit(
        s,
        now,
        "case",
        case_id=row.id,
        gpu_name=None,
        from_state="-",
        to_state=row.status,
        trigger="register",
        case=row,
    )
    s.flush()
    return case_record(row), True


def sync_gpus(s: Session, gpus: Sequence[tuple[str, str | None]], now: datetime) -> int:
    """Insert the GPUs not yet known as ``available``; returns how many were added."""
    names = [n for n, _ in gpus]
    known = set(s.scalars(select(GpuResource.name).where(GpuResource.name.in_(names))))
    added = 0
    for name, host in gpus:
        if name in known:
            continue
        known.add(name)
        s.add(
            GpuResource(
                name=name,
                host=host,
                status=GpuState.AVAILABLE.value,
                offline_requested=False,
                status_updated_at=now,
            )
        )
        _audit(
            s,
            now,
            "gpu",
            case_id=None,
            gpu_name=name,
            from_state="-",
            to_state=GpuState.AVAILABLE.value,
            trigger="add",
            detail=f"host={host}",
        )
        added += 1
    s.flush()
    return added


def _pick_gpu(s: Session, candidates: Sequence[str] | None) -> GpuResource | None:
    free = select(GpuResource).where(
        GpuResource.status == GpuState.AVAILABLE.value,
        GpuResource.offline_requested.is_(False),
    )
    # SKIP LOCKED: a GPU another claimer is taking is simply not a candidate.
    if candidates is None:
        q = free.order_by(GpuResource.name).limit(1).with_for_update(skip_locked=True)
        return s.scalars(q).first()
    for name in candidates:  # in the caller's order of preference
        q = free.where(GpuResource.name == name).with_for_update(skip_locked=True)
        row = s.scalars(q).first()
        if row is not None:
            return row
    return None


def claim(
    s: Session,
    case_id: int,
    now: datetime,
    plan: ClaimPlan,
    candidates: Sequence[str] | None = None,
) -> tuple[CaseRecord, GpuRecord] | None:
    """Lock the case and one free GPU; fire case ``claim`` + GPU ``assign``."""
    case = _lock_case(s, case_id)
    if case.status != CaseState.SUBMITTED.value:
        return None
    gpu = _pick_gpu(s, candidates)
    if gpu is None:
        return None
    label, remote_dir = plan(case_record(case), gpu_record(gpu))
    # The attempt's secret, stored with the label before anything is sent: markers and
    # processes count as this attempt's only when they carry it (remote/markers.py).
    token = secrets.token_hex(16)
    step = plan_step(
        CaseFacts(case.id, case.status, label),
        "claim",
        GpuFacts(gpu.name, gpu.status, case.id, label, bool(gpu.offline_requested)),
        "assign",
    )
    given = CaseInputs(
        now=now,
        attempt=case.attempt,
        label=label,
        remote_dir=remote_dir,
        host=gpu.host,
        gpu_name=gpu.name,
        token=token,
    )
    _move_case(s, case, "claim", step.case_from, step.case_to, given, None, "", gpu.name)
    fields = gpu_effects(
        "assign", case_id=case.id, job_label=label, job_dir=remote_dir, job_token=token
    )
    _move_gpu(s, gpu, "assign", step.gpu_from, step.gpu_to, fields, now, None, "", case.id)
    s.flush()
    return case_record(case), gpu_record(gpu)


def _move_case(
    s: Session,
    case: Case,
    trigger: str,
    old: CaseState | None,
    new: CaseState | None,
    given: CaseInputs,
    evidence: Evidence | None,
    detail: str,
    gpu_name: str | None,
) -> None:
    assert old is not None and new is not None
    for key, value in case_effects(trigger, given).items():
        setattr(case, key, value)
    case.status = new.value
    case.status_updated_at = given.now
    _audit(
        s,
        given.now,
        "case",
        case_id=case.id,
        gpu_name=gpu_name,
        from_state=old.value,
        to_state=new.value,
        trigger=trigger,
        evidence=evidence,
        detail=detail,
        case=case,
    )


def _move_gpu(
    s: Session,
    gpu: GpuResource,
    trigger: str,
    old: GpuState | None,
    new: GpuState | None,
    fields: dict[str, object],
    now: datetime,
    evidence: Evidence | None,
    detail: str,
    case_id: int | None,
) -> None:
    assert old is not None and new is not None
    for key, value in fields.items():
        setattr(gpu, key, value)
    gpu.status = new.value
    gpu.status_updated_at = now
    _audit(
        s,
        now,
        "gpu",
        case_id=case_id,
        gpu_name=gpu.name,
        from_state=old.value,
        to_state=new.value,
        trigger=trigger,
        evidence=evidence,
        detail=detail,
    )


def apply_step(
    s: Session,
    case_id: int | None,
    case_trigger: str | None,
    gpu_name: str | None,
    gpu_trigger: str | None,
    *,
    evidence: Evidence | None,
    now: datetime,
    detail: str = "",
    failure_reason: str | None = None,
    job_id: str | None = None,
    expected_case_version: int | None = None,
) -> tuple[CaseRecord | None, GpuRecord | None]:
    """Validate with ``plan_step`` and write both halves and their audit rows."""
    # Lock order everywhere: case first, then GPU (no deadlock between writers).
    case = _lock_case(s, case_id) if case_id is not None else None
    stale = expected_case_version is not None and case is not None
    if stale and case is not None and case.version != expected_case_version:
        raise ConflictError(
            f"case {case.id} is at version {case.version}, not {expected_case_version}"
        )
    # Callers may omit the GPU: the case knows which one it holds.
    needs_gpu = gpu_trigger is not None or (case_trigger == "confirm_submitted" and job_id)
    if gpu_name is None and case is not None and needs_gpu:
        gpu_name = case.gpu_name
    gpu = _lock_gpu(s, gpu_name) if gpu_name is not None else None

    facts_case = (
        CaseFacts(case.id, case.status, case.label)
        if case is not None and case_trigger is not None
        else None
    )
    facts_gpu = None
    if gpu is not None and gpu_trigger is not None:
        assigning = gpu_trigger == "assign" and case is not None
        facts_gpu = _gpu_facts(gpu, case.id if assigning and case else None)
    step = plan_step(facts_case, case_trigger, facts_gpu, gpu_trigger, evidence)

    held_case = gpu.assigned_case_id if gpu is not None else None
    if case is not None and case_trigger is not None:
        given = CaseInputs(
            now=now,
            attempt=case.attempt,
            failure_reason=failure_reason,
            job_id=job_id,
            label=case.label,
            remote_dir=case.remote_dir,
            host=case.host,
            gpu_name=case.gpu_name,
        )
        involved = gpu.name if gpu is not None else case.gpu_name
        _move_case(
            s, case, case_trigger, step.case_from, step.case_to, given, evidence, detail, involved
        )
        holds = gpu is not None and gpu.assigned_case_id == case.id
        if case_trigger == "confirm_submitted" and job_id and gpu is not None and holds:
            gpu.job_id = job_id
    if gpu is not None and gpu_trigger is not None:
        fields = gpu_effects(
            gpu_trigger,
            case_id=case.id if case is not None else held_case,
            job_label=case.label if case is not None else None,
            job_dir=case.remote_dir if case is not None else None,
            job_token=case.attempt_token if case is not None else None,
        )
        about = case.id if case is not None else held_case
        _move_gpu(
            s, gpu, gpu_trigger, step.gpu_from, step.gpu_to, fields, now, evidence, detail, about
        )
    s.flush()
    return (
        case_record(case) if case is not None else None,
        gpu_record(gpu) if gpu is not None else None,
    )


def _note_detail(detail: str, fields: dict[str, object]) -> str:
    listed = ", ".join(f"{k}={v!s}" for k, v in sorted(fields.items()))
    return f"{detail} [{listed}]" if detail else listed


def update_case(
    s: Session, case_id: int, now: datetime, detail: str, fields: dict[str, object]
) -> CaseRecord:
    """Set non-status fields of a case and write a ``note`` audit row."""
    bad = set(fields) - CASE_NOTE_FIELDS
    if bad:
        raise ValueError(
            f"update_case cannot set {sorted(bad)}; allowed: {sorted(CASE_NOTE_FIELDS)}"
        )
    case = _lock_case(s, case_id)
    for key, value in fields.items():
        setattr(case, key, value)
    _audit(
        s,
        now,
        "case",
        case_id=case.id,
        gpu_name=case.gpu_name,
        from_state=case.status,
        to_state=case.status,
        trigger="note",
        detail=_note_detail(detail, fields),
        case=case,
    )
    s.flush()
    return case_record(case)


def update_gpu(
    s: Session, name: str, now: datetime, detail: str, fields: dict[str, object]
) -> GpuRecord:
    """Set non-status fields of a GPU and write a ``note`` audit row."""
    bad = set(fields) - GPU_NOTE_FIELDS
    if bad:
        raise ValueError(f"update_gpu cannot set {sorted(bad)}; allowed: {sorted(GPU_NOTE_FIELDS)}")
    gpu = _lock_gpu(s, name)
    for key, value in fields.items():
        setattr(gpu, key, value)
    _audit(
        s,
        now,
        "gpu",
        case_id=gpu.assigned_case_id,
        gpu_name=gpu.name,
        from_state=gpu.status,
        to_state=gpu.status,
        trigger="note",
        detail=_note_detail(detail, fields),
    )
    s.flush()
    return gpu_record(gpu)


def set_gpu_offline(s: Session, name: str, now: datetime, offline: bool) -> GpuRecord:
    """Operator: mark a GPU to leave (or rejoin) the pool; moves it now if it is idle."""
    gpu = _lock_gpu(s, name)
    gpu.offline_requested = offline
    trigger = None
    if offline and gpu.status == GpuState.AVAILABLE.value:
        trigger = "take_offline"
    elif not offline and gpu.status == GpuState.OFFLINE.value:
        trigger = "bring_online"
    detail = f"offline_requested={offline}"
    if trigger is None:
        _audit(
            s,
            now,
            "gpu",
            case_id=gpu.assigned_case_id,
            gpu_name=gpu.name,
            from_state=gpu.status,
            to_state=gpu.status,
            trigger="note",
            detail=detail,
        )
    else:
        step = plan_step(None, None, _gpu_facts(gpu), trigger)
        _move_gpu(s, gpu, trigger, step.gpu_from, step.gpu_to, {}, now, None, detail, None)
    s.flush()
    return gpu_record(gpu)
