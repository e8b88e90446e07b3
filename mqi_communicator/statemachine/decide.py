"""The reconciler's decisions: pure functions from (saved state, observation, now) to a step.

The engine observes (one poll per host), asks these functions what to do, acts, and
persists through the store. Keeping every decision here, free of I/O and of the clock,
lets the Hypothesis model and the exhaustive explorer check the very same rules the
service runs.

Policy choices made here (the README repeats them):

* Timeout is measured from the job's start (first observed running).
* A job whose process group is still alive is alive, whatever the scheduler says.
* A kill is confirmed only by a later observation; if none comes within the
  kill-confirm window, or the host is unreachable when we try to kill, the case ends
  and its GPU goes to ``zombie``.
* A GPU taken offline while busy lets its job finish (drains); cancel the case to kill.
* A job that vanished (absent, no exit marker, no live process) is retried while
  attempts remain: the scheduler lost it, the physics did not fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .evidence import Evidence, EvidenceKind
from .guards import CaseFacts, GpuFacts
from .jobs import JobState
from .triggers import CaseTrigger, GpuTrigger, KillReason

__all__ = [
    "Apply",
    "Decision",
    "JobObservation",
    "MarkStarted",
    "Policy",
    "RequestKill",
    "Wait",
    "decide_after_submit_error",
    "decide_kill_unreachable",
    "decide_retrieval_error",
    "decide_running",
    "decide_submitting_recovery",
    "decide_zombie",
]


@dataclass(frozen=True)
class Policy:
    """Timeouts and retry limits that shape decisions."""

    job_timeout: timedelta = timedelta(hours=6)
    kill_confirm_window: timedelta = timedelta(minutes=2)
    max_attempts: int = 3
    max_retrieve_failures: int = 5
    #: Consecutive local errors (engine/fault.py) after which a case fails.
    max_local_failures: int = 5


@dataclass(frozen=True)
class JobObservation:
    """What one poll said about one job, or that the host could not be asked."""

    reachable: bool
    observed_at: datetime
    state: JobState = JobState.UNKNOWN
    exit_code: int | None = None
    processes_gone: bool | None = None
    detail: str = ""
    log_tail: str = ""
    started_at: datetime | None = None


@dataclass(frozen=True)
class Apply:
    """Apply one store step. ``gpu_trigger`` None means the case's GPU is not touched."""

    case_trigger: CaseTrigger | None
    gpu_trigger: GpuTrigger | None
    evidence: Evidence | None
    reason: str
    failure_reason: str | None = None


@dataclass(frozen=True)
class RequestKill:
    """Ask the scheduler to kill the job and record when we asked."""

    reason: KillReason


@dataclass(frozen=True)
class MarkStarted:
    """Record the job's start time (the timeout clock starts here)."""

    started_at: datetime


@dataclass(frozen=True)
class Wait:
    """Nothing to do now."""

    reason: str


Decision = Apply | RequestKill | MarkStarted | Wait


def _ended(obs: JobObservation) -> bool:
    """True when the observation shows the job over AND nothing of it still runs."""
    if not obs.reachable or obs.processes_gone is False:
        return False
    if obs.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.ABSENT):
        return True
    # Pueue reports Killed after a hard daemon crash for processes that still live.
    return obs.state is JobState.KILLED and obs.processes_gone is True


def _evidence(
    kind: EvidenceKind, label: str | None, obs: JobObservation, job_id: str | None, **kw: object
) -> Evidence:
    detail = obs.state.value if obs.exit_code is None else f"{obs.state.value} ({obs.exit_code})"
    if obs.detail:
        detail += f": {obs.detail}"
    requested = kw.get("requested_at")
    return Evidence(
        kind,
        label,
        obs.observed_at,
        job_id=job_id,
        requested_at=requested if isinstance(requested, datetime) else None,
        detail=detail,
    )


def _failure_text(obs: JobObservation) -> str:
    text = f"job exited with code {obs.exit_code}"
    if obs.log_tail:
        text += f"; log tail:\n{obs.log_tail[-2000:]}"
    return text


def _give_up_kill(case: CaseFacts, now: datetime, why: str) -> Apply:
    evidence = Evidence(
        EvidenceKind.KILL_UNCONFIRMED,
        case.label,
        now,
        job_id=case.job_id,
        requested_at=case.kill_requested_at,
        detail=why,
    )
    if case.kill_reason == KillReason.CANCEL or case.cancel_requested:
        return Apply(
            CaseTrigger.CANCEL,
            GpuTrigger.QUARANTINE,
            evidence,
            why,
            f"cancelled; {why}; GPU quarantined",
        )
    return Apply(
        CaseTrigger.FAIL, GpuTrigger.QUARANTINE, evidence, why, f"timed out; {why}; GPU quarantined"
    )


def decide_running(case: CaseFacts, obs: JobObservation, now: datetime, policy: Policy) -> Decision:
    """Decide for a ``running`` case given this tick's observation of its job."""
    requested = case.kill_requested_at
    if _ended(obs) and requested is not None and obs.observed_at <= requested:
        # Only a later observation confirms a kill (the clock may have stepped back):
        # offering this one as evidence would only make the guard refuse the step.
        return Wait("the observation predates the kill request; waiting for a later one")
    if _ended(obs):
        if case.kill_requested_at is not None:
            ev = _evidence(
                EvidenceKind.KILL_CONFIRMED,
                case.label,
                obs,
                case.job_id,
                requested_at=case.kill_requested_at,
            )
        elif obs.state is JobState.ABSENT:
            ev = _evidence(EvidenceKind.CONFIRMED_ABSENT, case.label, obs, case.job_id)
        else:
            ev = _evidence(EvidenceKind.OBSERVED_TERMINAL, case.label, obs, case.job_id)
        if case.cancel_requested or case.kill_reason == KillReason.CANCEL:
            return Apply(
                CaseTrigger.CANCEL,
                GpuTrigger.RELEASE,
                ev,
                "cancelled; job confirmed gone",
                "cancelled by operator",
            )
        if obs.state is JobState.SUCCEEDED:
            return Apply(CaseTrigger.JOB_SUCCEEDED, GpuTrigger.RELEASE, ev, "job succeeded")
        if case.kill_reason == KillReason.TIMEOUT:
            return Apply(
                CaseTrigger.FAIL,
                GpuTrigger.RELEASE,
                ev,
                "timed out; kill confirmed",
                f"timed out after {policy.job_timeout}; job killed",
            )
        if obs.state is JobState.FAILED:
            return Apply(CaseTrigger.FAIL, GpuTrigger.RELEASE, ev, "job failed", _failure_text(obs))
        if obs.state is JobState.KILLED:
            return Apply(
                CaseTrigger.FAIL,
                GpuTrigger.RELEASE,
                ev,
                "killed outside the communicator",
                "job was killed outside the communicator",
            )
        if case.attempt < policy.max_attempts:
            return Apply(CaseTrigger.REQUEUE, GpuTrigger.RELEASE, ev, "job vanished; retrying")
        return Apply(
            CaseTrigger.FAIL,
            GpuTrigger.RELEASE,
            ev,
            "job vanished",
            "job vanished from the scheduler with no exit marker; attempts exhausted",
        )

    if case.kill_requested_at is not None:
        if now - case.kill_requested_at >= policy.kill_confirm_window:
            why = "kill not confirmed within the window"
            if not obs.reachable:
                why += " (host unreachable)"
            return _give_up_kill(case, now, why)
        return Wait("waiting for the kill to be confirmed")

    if not obs.reachable or obs.state is JobState.UNKNOWN:
        return Wait("job status unknown; will ask again")
    if case.cancel_requested:
        return RequestKill(KillReason.CANCEL)
    alive_since = case.started_at
    if obs.state is JobState.RUNNING and alive_since is None:
        return MarkStarted(obs.started_at or obs.observed_at)
    if alive_since is not None and now - alive_since >= policy.job_timeout:
        return RequestKill(KillReason.TIMEOUT)
    return Wait(f"job {obs.state.value}")


def decide_kill_unreachable(case: CaseFacts, now: datetime) -> Apply:
    """The kill could not even be sent: the job may live on, so the GPU is quarantined."""
    return _give_up_kill(case, now, "host unreachable when killing")


def decide_submitting_recovery(
    case: CaseFacts, found_job_id: str | None, reachable: bool, now: datetime, policy: Policy
) -> Decision:
    """A case left in ``submitting`` (we crashed, or submit's outcome was unknown).

    ``found_job_id`` comes from ``find_by_label``; None with ``reachable`` means the
    scheduler answered and no job with our label (nor its processes) exists.
    """
    if not reachable:
        return Wait("host unreachable; submit outcome unknown")
    if found_job_id is not None:
        ev = Evidence(
            EvidenceKind.SUBMIT_ACCEPTED,
            case.label,
            now,
            job_id=found_job_id,
            detail="found by label",
        )
        return Apply(CaseTrigger.CONFIRM_SUBMITTED, None, ev, "job found by label")
    ev = Evidence(EvidenceKind.NEVER_SUBMITTED, case.label, now, detail="not found by label")
    return _not_submitted(case, ev, policy, "no job with our label exists")


def _not_submitted(case: CaseFacts, ev: Evidence, policy: Policy, why: str) -> Apply:
    if case.cancel_requested:
        return Apply(CaseTrigger.CANCEL, GpuTrigger.RELEASE, ev, why, "cancelled by operator")
    if case.attempt < policy.max_attempts:
        return Apply(CaseTrigger.REQUEUE, GpuTrigger.RELEASE, ev, f"{why}; retrying")
    return Apply(CaseTrigger.FAIL, GpuTrigger.RELEASE, ev, why, f"{why}; attempts exhausted")


def decide_after_submit_error(
    case: CaseFacts, error: str, *, permanent: bool, sent: bool, now: datetime, policy: Policy
) -> Decision:
    """Upload or submit failed.

    Args:
        error: The error text, recorded as the reason.
        permanent: The error will repeat (bad case content, submission rejected).
        sent: The submit command may have reached the scheduler (outcome unknown). Then
            we must not assume anything: the case stays ``submitting`` for recovery.
    """
    if sent:
        return Wait(f"submit outcome unknown ({error}); will recover by label")
    ev = Evidence(EvidenceKind.NEVER_SUBMITTED, case.label, now, detail=error[:500])
    if permanent:
        return Apply(CaseTrigger.FAIL, GpuTrigger.RELEASE, ev, error, error)
    return _not_submitted(case, ev, policy, error)


def decide_retrieval_error(
    case: CaseFacts, error: str, *, permanent: bool, policy: Policy
) -> Decision:
    """Download or verification of results failed."""
    if permanent or case.transient_failures + 1 >= policy.max_retrieve_failures:
        return Apply(
            CaseTrigger.FAIL, None, None, error, f"results could not be retrieved: {error}"
        )
    return Wait(f"retrieval failed ({error}); will retry")


def decide_zombie(gpu: GpuFacts, obs: JobObservation) -> Decision:
    """A quarantined GPU: recover only on evidence that its stray job is gone."""
    if _ended(obs):
        kind = (
            EvidenceKind.CONFIRMED_ABSENT
            if obs.state is JobState.ABSENT
            else EvidenceKind.OBSERVED_TERMINAL
        )
        return Apply(
            None,
            GpuTrigger.RECOVER,
            _evidence(kind, gpu.job_label, obs, gpu.job_id),
            "stray job confirmed gone",
        )
    if not obs.reachable or obs.state is JobState.UNKNOWN:
        return Wait("host unreachable or status unknown; zombie stays")
    return RequestKill(KillReason.ZOMBIE)
