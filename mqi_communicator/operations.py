"""Operator operations on cases, each one trigger applied in one store transaction.

The tables decide what each does from the case's state (:mod:`.statemachine.tables`):
``cancel`` ends a waiting or retrieving case at once and only flags one whose job may
run (the engine kills it and frees the GPU on evidence); ``retry`` starts a new attempt
with its counters reset. Nothing here branches on a state.
"""

from __future__ import annotations

from datetime import datetime

from .persistence import CaseRecord, Store
from .statemachine import CaseTrigger, Evidence, EvidenceKind

__all__ = ["cancel_case", "fail_at_intake", "retry_case"]


def cancel_case(store: Store, case_id: int, now: datetime) -> CaseRecord:
    """Cancel a case, or flag it for the engine when its job may still run.

    Raises:
        InvalidTransitionError: the case already ended.
        NotFoundError: no such case.
    """
    label = store.get_case(case_id).label  # the evidence names the attempt's job
    case, _ = store.apply(
        case_id,
        CaseTrigger.CANCEL,
        None,
        None,
        evidence=Evidence(EvidenceKind.OPERATOR, label, now, detail=CaseTrigger.CANCEL),
        now=now,
        detail="cancel by operator",
    )
    assert case is not None
    return case


def retry_case(store: Store, case_id: int, now: datetime) -> CaseRecord:
    """Give a ``failed`` or ``cancelled`` case another attempt (attempt + 1).

    Raises:
        InvalidTransitionError: the case is not failed or cancelled.
    """
    case, _ = store.apply(
        case_id,
        CaseTrigger.RETRY,
        None,
        None,
        evidence=Evidence(EvidenceKind.OPERATOR, None, now, detail=CaseTrigger.RETRY),
        now=now,
        detail="retried by operator",
    )
    assert case is not None
    return case


def fail_at_intake(store: Store, case_id: int, problem: str, now: datetime) -> CaseRecord:
    """Record a just-registered case that cannot run (empty or unreadable) as ``failed``."""
    failed, _ = store.apply(
        case_id,
        CaseTrigger.FAIL,
        None,
        None,
        evidence=Evidence(EvidenceKind.INTAKE, None, now, detail=problem),
        now=now,
        detail=problem,
        failure_reason=problem,
    )
    assert failed is not None
    return failed
