"""Write operations on cases: register, apply one step, and notes.

Each takes an explicit ``Session`` inside a write transaction (the caller commits) and
flushes before building its records. Every status change goes through
:func:`~mqi_communicator.statemachine.plan_step`; its errors propagate before anything
is flushed, so a refused step writes nothing, and the store writes what it planned (the
tables' effects) without knowing the trigger. The claim lives in :mod:`.store_claim`,
GPU-only writes in :mod:`.store_gpu_writes`, leases in :mod:`.store_lease`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConflictError
from ..statemachine import CaseState, CaseTrigger, Evidence, GpuTrigger, StepInputs, plan_step
from ..statemachine.machines import first_allowed
from ..statemachine.triggers import typed
from .models import Case
from .records import CaseRecord, GpuRecord, case_facts, case_record, gpu_facts, gpu_record
from .store_rows import audit, check_attempt, lock_case, lock_gpu, move_case, move_gpu, note

__all__ = ["CASE_NOTE_FIELDS", "apply_step", "register_case", "update_case"]


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
    case_trigger: CaseTrigger | tuple[CaseTrigger, ...] | None,
    gpu_name: str | None,
    gpu_trigger: GpuTrigger | None,
    *,
    evidence: Evidence | None,
    now: datetime,
    detail: str = "",
    failure_reason: str | None = None,
    job_id: str | None = None,
    retry_at: datetime | None = None,
    kill_reason: str | None = None,
    expected_case_version: int | None = None,
    expected_attempt: int | None = None,
    expected_label: str | None = None,
) -> tuple[CaseRecord | None, GpuRecord | None]:
    """Validate with ``plan_step`` and write both halves and their audit rows.

    ``case_trigger`` may offer alternatives: the first the machine allows from the
    locked row is fired (see :func:`~mqi_communicator.statemachine.machines.first_allowed`).

    ``expected_attempt``/``expected_label``: see :func:`.store_rows.check_attempt`.
    """
    gpu_trigger = typed(GpuTrigger, gpu_trigger)  # the library's callers may pass text
    # Lock order everywhere: case first, then GPU (no deadlock between writers).
    case = lock_case(s, case_id) if case_id is not None else None
    if isinstance(case_trigger, tuple) and case is not None:
        case_trigger = first_allowed(case_facts(case_record(case)), case_trigger, evidence)
    assert not isinstance(case_trigger, tuple), "alternatives need a case"
    case_trigger = typed(CaseTrigger, case_trigger)
    if case is not None:
        check_attempt(case, None, expected_attempt, expected_label)
        if expected_case_version is not None and case.version != expected_case_version:
            raise ConflictError(
                f"case {case.id} is at version {case.version}, not {expected_case_version}"
            )
    # Callers may omit the GPU: the case knows which one it holds.
    held_by = case.gpu_name if case is not None else None
    if gpu_name is None and gpu_trigger is not None:
        gpu_name = held_by
    gpu = lock_gpu(s, gpu_name) if gpu_name is not None and gpu_trigger is not None else None
    if case is None:
        check_attempt(None, gpu, expected_attempt, expected_label)

    held_case = gpu.assigned_case_id if gpu is not None else None
    given = StepInputs(
        now=now,
        case_id=case.id if case is not None else held_case,
        label=case.label if case is not None else None,
        remote_dir=case.remote_dir if case is not None else None,
        host=case.host if case is not None else None,
        gpu_name=held_by,
        token=case.attempt_token if case is not None else None,
        failure_reason=failure_reason,
        job_id=job_id,
        retry_at=retry_at,
        kill_reason=kill_reason,
    )
    step = plan_step(
        case_facts(case_record(case)) if case is not None and case_trigger else None,
        case_trigger,
        gpu_facts(gpu_record(gpu)) if gpu is not None else None,
        gpu_trigger,
        evidence,
        given,
    )
    holder = None
    if case is not None and case_trigger is not None:
        involved = gpu.name if gpu is not None else held_by
        move_case(s, case, case_trigger, step, now, evidence, detail, involved)
        if step.holder_fields and held_by is not None:
            # Fields the case's row sets on the GPU that holds it (e.g. the job id).
            holder = gpu if gpu is not None else lock_gpu(s, held_by)
            if holder.assigned_case_id == case.id:
                for key, value in step.holder_fields.items():
                    setattr(holder, key, value)
    if gpu is not None and gpu_trigger is not None:
        move_gpu(s, gpu, gpu_trigger, step, now, evidence, detail, given.case_id)
    s.flush()
    shown = gpu if gpu is not None else holder
    return (
        case_record(case) if case is not None else None,
        gpu_record(shown) if shown is not None else None,
    )


#: Fields ``update_case`` may set: bookkeeping outside the machines (never ``status``,
#: never a flag the tables own, such as ``cancel_requested`` or ``kill_requested_at``).
CASE_NOTE_FIELDS = frozenset(
    {
        "progress",
        "started_at",
        "job_id",
        "next_attempt_at",
        "transient_failures",
        # The fault boundary's bookkeeping (engine/fault.py).
        "local_failures",
        "storage_waits",
        "last_error",
        # Only ever set for a legacy job, whose host adoption could not know
        # (engine/legacy_jobs.py resolves it from the config's pueue_group).
        "host",
    }
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
    case = lock_case(s, case_id)
    check_attempt(case, None, expected_attempt, expected_label)
    note(s, case, now, detail, fields, CASE_NOTE_FIELDS)
    s.flush()
    return case_record(case)
