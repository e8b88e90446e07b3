"""What each trigger does to the non-status fields: pure functions, one table each.

The store applies ``status`` itself (from :func:`~mqi_communicator.statemachine.plan_step`)
and then these field effects, in the same transaction. Keeping them pure lets the
Hypothesis model replay the audit trail with the very same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "CANCEL_REASON",
    "CASE_NOTE_FIELDS",
    "GPU_NOTE_FIELDS",
    "CaseInputs",
    "case_effects",
    "gpu_effects",
]

#: The failure reason recorded when an operator cancels without giving one.
CANCEL_REASON = "cancelled by operator"

#: Fields ``Store.update_case`` may set (never ``status``).
CASE_NOTE_FIELDS = frozenset(
    {
        "progress",
        "started_at",
        "job_id",
        "kill_requested_at",
        "kill_reason",
        "cancel_requested",
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

#: Fields ``Store.update_gpu`` may set (never ``status``).
GPU_NOTE_FIELDS = frozenset({"kill_requested_at", "next_check_at", "host"})

_RESET_JOB = {
    "label": None,
    "job_id": None,
    "remote_dir": None,
    "host": None,
    "gpu_name": None,
    "started_at": None,
    "kill_requested_at": None,
    "kill_reason": None,
    "cancel_requested": False,
    "attempt_token": None,
    # A retried legacy case runs as our own job: it must not stay "legacy".
    "job_origin": None,
}


#: An operator's retry, or a step forward, starts the fault bookkeeping afresh.
_RESET_FAULTS = {
    "transient_failures": 0,
    "local_failures": 0,
    "storage_waits": 0,
    "last_error": None,
    "next_attempt_at": None,
}


@dataclass(frozen=True)
class CaseInputs:
    """What a case trigger may need beyond the row itself."""

    now: datetime
    attempt: int
    failure_reason: str | None = None
    job_id: str | None = None
    label: str | None = None
    remote_dir: str | None = None
    host: str | None = None
    gpu_name: str | None = None
    token: str | None = None


def case_effects(trigger: str, given: CaseInputs) -> dict[str, object]:
    """The case fields ``trigger`` sets (besides ``status`` and ``status_updated_at``)."""
    if trigger == "claim":
        return {
            "label": given.label,
            "remote_dir": given.remote_dir,
            "host": given.host,
            "gpu_name": given.gpu_name,
            "attempt_token": given.token,
        }
    if trigger == "confirm_submitted":
        # Forward progress: earlier local errors no longer count as consecutive.
        job: dict[str, object] = {} if given.job_id is None else {"job_id": given.job_id}
        return {"local_failures": 0, **job}
    if trigger == "requeue":
        out: dict[str, object] = {**_RESET_JOB, "attempt": given.attempt + 1}
        if given.failure_reason is not None:
            out["failure_reason"] = given.failure_reason
        return out
    if trigger == "retry":
        return {
            **_RESET_JOB,
            **_RESET_FAULTS,
            "attempt": given.attempt + 1,
            "failure_reason": None,
            "completed_at": None,
            "progress": 0,
        }
    if trigger == "retry_retrieval":
        # Same attempt, label and remote directory: only its download is tried again.
        return {**_RESET_FAULTS, "failure_reason": None, "completed_at": None}
    if trigger == "job_succeeded":
        # The step releases (or quarantines) the GPU: the case no longer holds one.
        return {"gpu_name": None, **_RESET_FAULTS}
    if trigger == "retrieved":
        # What held it back is in the audit trail; a completed case shows no error.
        return {"progress": 100, "completed_at": given.now, **_RESET_FAULTS}
    if trigger in {"fail", "cancel"}:
        reason = given.failure_reason
        if reason is None and trigger == "cancel":
            reason = CANCEL_REASON
        out = {"completed_at": given.now, "gpu_name": None}
        if reason is not None:
            out["failure_reason"] = reason
        return out
    return {}


def gpu_effects(
    trigger: str,
    *,
    case_id: int | None = None,
    job_label: str | None = None,
    job_dir: str | None = None,
    job_token: str | None = None,
) -> dict[str, object]:
    """The GPU fields ``trigger`` sets (besides ``status`` and ``status_updated_at``)."""
    if trigger == "assign":
        return {
            "assigned_case_id": case_id,
            "job_label": job_label,
            "job_dir": job_dir,
            "job_token": job_token,
            "job_id": None,
            "kill_requested_at": None,
            "next_check_at": None,
        }
    if trigger in {"release", "recover", "operator_release"}:
        return {
            "assigned_case_id": None,
            "job_label": None,
            "job_id": None,
            "job_dir": None,
            "job_token": None,
            "job_origin": None,
            "quarantined_case_id": None,
            "kill_requested_at": None,
            "next_check_at": None,
        }
    if trigger == "quarantine":
        # The case moves on (it may be retried elsewhere); the job we placed, and the
        # case it belongs to, stay on record until the job is proven gone.
        return {"assigned_case_id": None, "quarantined_case_id": case_id}
    return {}
