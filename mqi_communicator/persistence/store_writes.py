"""Write operations on cases: register, apply one step, and notes.

Each takes an explicit ``Session`` inside a write transaction (the caller commits) and
flushes before building its records. Every status change goes through
:func:`~mqi_communicator.statemachine.plan_step`; its errors propagate before anything
is flushed, so a refused step writes nothing. The claim lives in :mod:`.store_claim`,
GPU-only writes in :mod:`.store_gpu_writes`, leases in :mod:`.store_lease`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConflictError
from ..statemachine import CaseFacts, CaseState, Evidence, plan_step
from .effects import CASE_NOTE_FIELDS, CaseInputs, gpu_effects
from .models import Case
from .records import CaseRecord, GpuRecord, case_record, gpu_record
from .store_rows import (
    audit,
    check_attempt,
    gpu_facts,
    lock_case,
    lock_gpu,
    move_case,
    move_gpu,
    note_detail,
)

__all__ = ["apply_step", "register_case", "update_case"]


def register_case(
    s: Session,
    path: str,
    now: datetime,
    *,
    fingerprint: str | None = None,
    after: int | None = None,
) -> tuple[CaseRecord, bool]:
    """Insert ``path`` as a ``submitted`` case, or return the existing one.

    ``after``: the id of the ended case the caller judged superseded (its folder was
    dropped again); a new row is inserted only while that is still the latest case of
    ``path``. Without it, only a path with no case at all gets a new row.
    """
    q = select(Case).where(Case.path == path).order_by(Case.id.desc()).limit(1)
    existing = s.scalars(q).first()
    if existing is not None and (after is None or existing.id != after):
        return case_record(existing), False
    row = Case(
        path=path,
        fingerprint=fingerprint,
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
    audit(
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
    expected_attempt: int | None = None,
    expected_label: str | None = None,
) -> tuple[CaseRecord | None, GpuRecord | None]:
    """Validate with ``plan_step`` and write both halves and their audit rows.

    ``expected_attempt``/``expected_label``: see :func:`.store_rows.check_attempt`.
    """
    # Lock order everywhere: case first, then GPU (no deadlock between writers).
    case = lock_case(s, case_id) if case_id is not None else None
    if case is not None:
        check_attempt(case, None, expected_attempt, expected_label)
    stale = expected_case_version is not None and case is not None
    if stale and case is not None and case.version != expected_case_version:
        raise ConflictError(
            f"case {case.id} is at version {case.version}, not {expected_case_version}"
        )
    # Callers may omit the GPU: the case knows which one it holds.
    needs_gpu = gpu_trigger is not None or (case_trigger == "confirm_submitted" and job_id)
    if gpu_name is None and case is not None and needs_gpu:
        gpu_name = case.gpu_name
    gpu = lock_gpu(s, gpu_name) if gpu_name is not None else None
    if case is None:
        check_attempt(None, gpu, expected_attempt, expected_label)

    facts_case = (
        CaseFacts(case.id, case.status, case.label)
        if case is not None and case_trigger is not None
        else None
    )
    facts_gpu = None
    if gpu is not None and gpu_trigger is not None:
        assigning = gpu_trigger == "assign" and case is not None
        facts_gpu = gpu_facts(gpu, case.id if assigning and case else None)
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
        move_case(
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
        move_gpu(
            s, gpu, gpu_trigger, step.gpu_from, step.gpu_to, fields, now, evidence, detail, about
        )
    s.flush()
    return (
        case_record(case) if case is not None else None,
        gpu_record(gpu) if gpu is not None else None,
    )


def update_case(
    s: Session,
    case_id: int,
    now: datetime,
    detail: str,
    fields: dict[str, object],
    *,
    expected_attempt: int | None = None,
    expected_label: str | None = None,
) -> CaseRecord:
    """Set non-status fields of a case and write a ``note`` audit row.

    ``expected_attempt``/``expected_label``: see :func:`.store_rows.check_attempt`.
    """
    bad = set(fields) - CASE_NOTE_FIELDS
    if bad:
        raise ValueError(
            f"update_case cannot set {sorted(bad)}; allowed: {sorted(CASE_NOTE_FIELDS)}"
        )
    case = lock_case(s, case_id)
    check_attempt(case, None, expected_attempt, expected_label)
    for key, value in fields.items():
        setattr(case, key, value)
    audit(
        s,
        now,
        "case",
        case_id=case.id,
        gpu_name=case.gpu_name,
        from_state=case.status,
        to_state=case.status,
        trigger="note",
        detail=note_detail(detail, fields),
        case=case,
    )
    s.flush()
    return case_record(case)
