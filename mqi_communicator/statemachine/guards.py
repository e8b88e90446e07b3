"""The safety rules, as small pure functions over a model snapshot and the evidence.

The guards, not the callers, decide whether a GPU may be freed: the engine's evidence
must pass :func:`termination_proven`; the one other way out, an operator's attested word
about a zombie, must pass :func:`operator_attested` on its own trigger
(``operator_release``), so engine evidence can never take that path nor the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .evidence import Evidence, EvidenceKind

__all__ = [
    "CASE_GUARDS",
    "GPU_GUARDS",
    "CaseFacts",
    "GpuFacts",
    "operator_attested",
    "termination_proven",
]


@dataclass(frozen=True)
class GpuFacts:
    """What the GPU guards and the zombie decisions may look at (one snapshot of a GPU).

    ``case_id`` is the case the GPU holds; ``job_*`` describe the job we placed on it
    (kept while it is a zombie).
    """

    name: str
    state: str
    case_id: int | None = None
    job_label: str | None = None
    offline_requested: bool = False
    job_id: str | None = None
    kill_requested_at: datetime | None = None


@dataclass(frozen=True)
class CaseFacts:
    """What the case guards and the engine's decisions may look at (one snapshot)."""

    case_id: int
    state: str
    label: str | None = None
    attempt: int = 1
    job_id: str | None = None
    started_at: datetime | None = None
    kill_requested_at: datetime | None = None
    kill_reason: str | None = None
    cancel_requested: bool = False
    transient_failures: int = 0
    local_failures: int = 0
    gpu_name: str | None = None


def termination_proven(gpu: GpuFacts, evidence: Evidence | None) -> bool:
    """True only when ``evidence`` proves that the job we placed on ``gpu`` is gone.

    The evidence must be of a terminating kind and be about *this* GPU's job label:
    an observation of a stranger's job (a reused Pueue id) proves nothing about ours.
    A missing label on either side (``None`` or ``""``) is never a match: "no label"
    equals "no label" only by accident (a job whose label was never recorded).
    """
    if evidence is None or not evidence.proves_termination:
        return False
    if not evidence.label or not gpu.job_label:
        return False
    return evidence.label == gpu.job_label


def operator_attested(gpu: GpuFacts, evidence: Evidence | None) -> bool:
    """True when an operator attested, with who and why, that the zombie's job is gone.

    Only the ``operator_release`` trigger uses this guard; the engine never makes such
    evidence. The label is not compared: the way out exists precisely for zombies whose
    job can no longer be observed (host gone), including those that never had a label.
    """
    return (
        evidence is not None
        and evidence.kind is EvidenceKind.OPERATOR_ATTESTED
        and bool(evidence.detail.strip())
        and bool((evidence.actor or "").strip())
    )


def _has_case(gpu: GpuFacts, evidence: Evidence | None) -> bool:
    return gpu.case_id is not None


def _offline_requested(gpu: GpuFacts, evidence: Evidence | None) -> bool:
    return gpu.offline_requested


def _has_label(case: CaseFacts, evidence: Evidence | None) -> bool:
    return bool(case.label)


def _by_operator(case: CaseFacts, evidence: Evidence | None) -> bool:
    # An operator's cancel carries operator evidence; the engine's never does.
    return evidence is not None and evidence.kind is EvidenceKind.OPERATOR


GpuGuard = Callable[[GpuFacts, Evidence | None], bool]
CaseGuard = Callable[[CaseFacts, Evidence | None], bool]

GPU_GUARDS: dict[str, GpuGuard] = {
    "termination_proven": termination_proven,
    "operator_attested": operator_attested,
    "has_case": _has_case,
    "offline_requested": _offline_requested,
}

CASE_GUARDS: dict[str, CaseGuard] = {
    "has_label": _has_label,
    "by_operator": _by_operator,
}
