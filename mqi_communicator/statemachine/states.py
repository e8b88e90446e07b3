"""The states of a case and of a GPU resource, as ``str`` enums (stored as text)."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CASE_STATES_HOLDING_GPU",
    "TERMINAL_CASE_STATES",
    "CaseState",
    "GpuState",
]


class CaseState(StrEnum):
    """Where a case is in its life."""

    #: Registered, waiting for a GPU.
    SUBMITTED = "submitted"
    #: A GPU is locked; upload and submit are in progress; the job label is decided.
    SUBMITTING = "submitting"
    #: The remote job is known to the scheduler.
    RUNNING = "running"
    #: The job succeeded; results are coming back.
    RETRIEVING = "retrieving"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class GpuState(StrEnum):
    """Where a GPU resource is."""

    AVAILABLE = "available"
    ASSIGNED = "assigned"
    #: Quarantined: a job we placed may still run on it. Leaves only on evidence.
    ZOMBIE = "zombie"
    #: Taken out of the pool by an operator; holds no job of ours.
    OFFLINE = "offline"


TERMINAL_CASE_STATES = frozenset({CaseState.COMPLETED, CaseState.FAILED, CaseState.CANCELLED})

#: A case in one of these states holds exactly one GPU in state ``assigned``.
CASE_STATES_HOLDING_GPU = frozenset({CaseState.SUBMITTING, CaseState.RUNNING})
