"""Shared pieces of the store's writes: row locks, audit rows, the two moves, and notes.

The moves write what a :class:`~mqi_communicator.statemachine.PlannedStep` says (fields
from the tables, then the status) without knowing which trigger fired.

Every write module (:mod:`.store_writes`, :mod:`.store_claim`, :mod:`.store_gpu_writes`)
locks rows through these helpers, in one order everywhere (case first, then GPU), so
writers never deadlock each other.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import NotFoundError, StaleOutcomeError
from ..statemachine import CaseTrigger, Evidence, GpuTrigger, PlannedStep
from .models import Case, CaseTransition, GpuResource
from .outbox import enqueue_event

__all__ = [
    "NOTE",
    "audit",
    "check_attempt",
    "lock_case",
    "lock_gpu",
    "move_case",
    "move_gpu",
    "note",
]

#: The audit trigger of a row that sets fields outside the machines (never a status).
NOTE = "note"


def lock_case(s: Session, case_id: int) -> Case:
    """The case row, locked for this transaction (:class:`NotFoundError` if none)."""
    # FOR UPDATE on PostgreSQL; SQLite ignores it (BEGIN IMMEDIATE already serialises).
    row = s.scalars(select(Case).where(Case.id == case_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFoundError(f"no case with id {case_id}")
    return row


def lock_gpu(s: Session, name: str) -> GpuResource:
    """The GPU row, locked for this transaction (:class:`NotFoundError` if none)."""
    q = select(GpuResource).where(GpuResource.name == name).with_for_update()
    row = s.scalars(q).one_or_none()
    if row is None:
        raise NotFoundError(f"no GPU named {name!r}")
    return row


def audit(
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
    """Add one audit row (``case`` gives the attempt and label it is about)."""
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


def move_case(
    s: Session,
    case: Case,
    trigger: CaseTrigger,
    step: PlannedStep,
    now: datetime,
    evidence: Evidence | None,
    detail: str,
    gpu_name: str | None,
) -> None:
    """Write the case half of ``step``: its fields, its status, and the audit row."""
    assert step.case_from is not None and step.case_to is not None
    _set(case, step.case_fields)
    if step.case_to is not step.case_from:
        case.status = step.case_to.value
        case.status_updated_at = now
        # A status change ends the step that held the lease (the claim sets a new one).
        case.lease_owner = None
        case.lease_expires_at = None
    audit(
        s,
        now,
        "case",
        case_id=case.id,
        gpu_name=gpu_name,
        from_state=step.case_from.value,
        to_state=step.case_to.value,
        trigger=trigger.value,
        evidence=evidence,
        detail=detail,
        case=case,
    )


def move_gpu(
    s: Session,
    gpu: GpuResource,
    trigger: GpuTrigger,
    step: PlannedStep,
    now: datetime,
    evidence: Evidence | None,
    detail: str,
    case_id: int | None,
) -> None:
    """Write the GPU half of ``step``: its fields, its status, and the audit row."""
    assert step.gpu_from is not None and step.gpu_to is not None
    _set(gpu, step.gpu_fields)
    if step.gpu_to is not step.gpu_from:
        gpu.status = step.gpu_to.value
        gpu.status_updated_at = now
    audit(
        s,
        now,
        "gpu",
        case_id=case_id,
        gpu_name=gpu.name,
        from_state=step.gpu_from.value,
        to_state=step.gpu_to.value,
        trigger=trigger.value,
        evidence=evidence,
        detail=detail,
    )


def note(
    s: Session,
    row: Case | GpuResource,
    now: datetime,
    detail: str,
    fields: dict[str, object],
    allowed: frozenset[str],
) -> None:
    """Set non-status fields of ``row`` (only ``allowed`` ones) and write a ``note`` row."""
    bad = set(fields) - allowed
    if bad:
        kind = "case" if isinstance(row, Case) else "gpu"
        raise ValueError(f"update_{kind} cannot set {sorted(bad)}; allowed: {sorted(allowed)}")
    _set(row, fields)
    listed = ", ".join(f"{k}={v!s}" for k, v in sorted(fields.items()))
    text = f"{detail} [{listed}]" if detail else listed
    if isinstance(row, Case):
        audit(
            s,
            now,
            "case",
            case_id=row.id,
            gpu_name=row.gpu_name,
            from_state=row.status,
            to_state=row.status,
            trigger=NOTE,
            detail=text,
            case=row,
        )
    else:
        audit(
            s,
            now,
            "gpu",
            case_id=row.assigned_case_id,
            gpu_name=row.name,
            from_state=row.status,
            to_state=row.status,
            trigger=NOTE,
            detail=text,
        )


def _set(row: Case | GpuResource, fields: dict[str, object]) -> None:
    for key, value in fields.items():
        setattr(row, key, value)


def check_attempt(
    case: Case | None,
    gpu: GpuResource | None,
    expected_attempt: int | None,
    expected_label: str | None,
) -> None:
    """Refuse an outcome started for an attempt the row no longer holds.

    The compare-and-set behind every remote outcome: ``expected_attempt`` and
    ``expected_label`` are those of the attempt the action was started for (None: not
    checked). They are compared with the case's attempt and label; without a case, the
    label is compared with the GPU's job label. The case version alone cannot do this:
    callers reload the case before applying, which is how a stale outcome used to land.

    Raises:
        StaleOutcomeError: the row holds another attempt or label; nothing was written.
        ValueError: ``expected_attempt`` given without a case.
    """
    if case is not None:
        attempt_ok = expected_attempt is None or case.attempt == expected_attempt
        label_ok = expected_label is None or case.label == expected_label
        if not (attempt_ok and label_ok):
            raise StaleOutcomeError(
                case.id, (expected_attempt, expected_label), (case.attempt, case.label)
            )
        return
    if expected_attempt is not None:
        raise ValueError("expected_attempt needs a case")
    if gpu is not None and expected_label is not None and gpu.job_label != expected_label:
        raise StaleOutcomeError(None, (None, expected_label), (None, gpu.job_label))
