"""The triggers of the case and GPU machines, and the reasons a kill is requested.

Typed everywhere in the package; the string form exists only where a trigger is stored
(the audit table's ``trigger`` column) and where ``transitions`` takes event names.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from ..errors import InvalidTransitionError

__all__ = ["CaseTrigger", "GpuTrigger", "KillReason", "Trigger", "typed"]


class CaseTrigger(StrEnum):
    """What can happen to a case (see :data:`.tables.CASE_TRANSITIONS`)."""

    CLAIM = "claim"
    CONFIRM_SUBMITTED = "confirm_submitted"
    REQUEUE = "requeue"
    REQUEST_KILL = "request_kill"
    JOB_SUCCEEDED = "job_succeeded"
    RETRIEVED = "retrieved"
    FAIL = "fail"
    CANCEL = "cancel"
    REQUEST_CANCEL = "request_cancel"
    RETRY = "retry"
    RETRY_RETRIEVAL = "retry_retrieval"


class GpuTrigger(StrEnum):
    """What can happen to a GPU (see :data:`.tables.GPU_TRANSITIONS`)."""

    ASSIGN = "assign"
    RELEASE = "release"
    QUARANTINE = "quarantine"
    RECOVER = "recover"
    OPERATOR_RELEASE = "operator_release"
    TAKE_OFFLINE = "take_offline"
    BRING_ONLINE = "bring_online"


Trigger = CaseTrigger | GpuTrigger
T = TypeVar("T", CaseTrigger, GpuTrigger)


def typed(enum: type[T], trigger: str | None, state: str = "-") -> T | None:
    """``trigger`` as a member of ``enum`` (the library boundary accepts its text too).

    Raises:
        InvalidTransitionError: no such trigger.
    """
    if trigger is None:
        return None
    try:
        return enum(trigger)
    except ValueError as err:
        kind = "case" if enum is CaseTrigger else "gpu"
        raise InvalidTransitionError(kind, str(state), str(trigger), "no such trigger") from err


class KillReason(StrEnum):
    """Why the engine asked a scheduler to kill a job (stored in ``kill_reason``)."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"
    ZOMBIE = "zombie"
