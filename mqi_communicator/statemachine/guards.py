"""The safety rules, as small pure functions over a model snapshot and the evidence.

The guards, not the callers, decide whether a GPU may be freed: no code path can free a
GPU without passing :func:`termination_proven`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .evidence import Evidence

__all__ = ["CASE_GUARDS", "GPU_GUARDS", "CaseFacts", "GpuFacts", "termination_proven"]


@dataclass(frozen=True)
class GpuFacts:
    """What the GPU guards may look at."""

    name: str
    state: str
    case_id: int | None = None
    job_label: str | None = None
    offline_requested: bool = False


@dataclass(frozen=True)
class CaseFacts:
    """What the case guards may look at."""

    case_id: int
    state: str
    label: str | None = None


def termination_proven(gpu: GpuFacts, evidence: Evidence | None) -> bool:
    """True only when ``evidence`` proves that the job we placed on ``gpu`` is gone.

    The evidence must be of a terminating kind and be about *this* GPU's job label:
    an observation of a stranger's job (a reused Pueue id) proves nothing about ours.
    """
    if evidence is None or not evidence.proves_termination:
        return False
    return evidence.label == gpu.job_label


def _has_case(gpu: GpuFacts, evidence: Evidence | None) -> bool:
    return gpu.case_id is not None


def _offline_requested(gpu: GpuFacts, evidence: Evidence | None) -> bool:
    return gpu.offline_requested


def _has_label(case: CaseFacts, evidence: Evidence | None) -> bool:
    return bool(case.label)


GpuGuard = Callable[[GpuFacts, Evidence | None], bool]
CaseGuard = Callable[[CaseFacts, Evidence | None], bool]

GPU_GUARDS: dict[str, GpuGuard] = {
    "termination_proven": termination_proven,
    "has_case": _has_case,
    "offline_requested": _offline_requested,
}

CASE_GUARDS: dict[str, CaseGuard] = {
    "has_label": _has_label,
}
