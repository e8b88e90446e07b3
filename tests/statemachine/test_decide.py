"""The reconciler's decisions, case by case, with time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mqi_communicator.statemachine import CaseFacts, CaseState, EvidenceKind, GpuFacts, GpuState
from mqi_communicator.statemachine.decide import (
    Apply,
    JobObservation,
    MarkStarted,
    Policy,
    RequestKill,
    Wait,
    decide_after_submit_error,
    decide_kill_unreachable,
    decide_retrieval_error,
    decide_running,
    decide_submitting_recovery,
    decide_zombie,
)
from mqi_communicator.statemachine.jobs import JobState

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = Policy(
    job_timeout=timedelta(minutes=10), kill_confirm_window=timedelta(minutes=2), max_attempts=3
)


def running(**kw: object) -> CaseFacts:
    base: dict[str, object] = dict(
        case_id=1, state=CaseState.RUNNING, attempt=1, label="L1", job_id="5", started_at=T0
    )
    base.update(kw)
    return CaseFacts(**base)  # type: ignore[arg-type]


def obs(state: JobState, at: datetime = T0, **kw: object) -> JobObservation:
    return JobObservation(reachable=True, observed_at=at, state=state, **kw)  # type: ignore[arg-type]


UNREACHABLE = JobObservation(reachable=False, observed_at=T0)


def test_success_releases_with_observed_terminal() -> None:
    d = decide_running(
        running(), obs(JobState.SUCCEEDED, exit_code=0, processes_gone=True), T0, POLICY
    )
    assert isinstance(d, Apply) and (d.case_trigger, d.gpu_trigger) == ("job_succeeded", "release")
    assert d.evidence is not None and d.evidence.kind is EvidenceKind.OBSERVED_TERMINAL
    assert d.evidence.label == "L1"


def test_failure_records_exit_code_and_log_tail() -> None:
    d = decide_running(running(), obs(JobState.FAILED, exit_code=3, log_tail="boom"), T0, POLICY)
    assert isinstance(d, Apply) and d.case_trigger == "fail" and d.gpu_trigger == "release"
    assert (
        d.failure_reason is not None and "code 3" in d.failure_reason and "boom" in d.failure_reason
    )


@pytest.mark.parametrize(
    "state", [JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED, JobState.ABSENT]
)
def test_living_process_group_is_never_terminal(state: JobState) -> None:
    d = decide_running(running(), obs(state, processes_gone=False), T0, POLICY)
    assert not isinstance(d, Apply)


def test_killed_without_proof_the_processes_are_gone_is_alive() -> None:
    # Pueue says Killed after a hard daemon crash even when the processes live on.
    d = decide_running(running(), obs(JobState.KILLED, processes_gone=None), T0, POLICY)
    assert not isinstance(d, Apply)


def test_first_running_observation_starts_the_clock() -> None:
    d = decide_running(running(started_at=None), obs(JobState.RUNNING), T0, POLICY)
    assert d == MarkStarted(T0)


def test_timeout_asks_for_a_kill_then_waits_then_quarantines() -> None:
    late = T0 + timedelta(minutes=11)
    assert decide_running(running(), obs(JobState.RUNNING, late), late, POLICY) == RequestKill(
        "timeout"
    )
    asked = running(kill_requested_at=late, kill_reason="timeout")
    within = late + timedelta(minutes=1)
    assert isinstance(decide_running(asked, obs(JobState.RUNNING, within), within, POLICY), Wait)
    after = late + timedelta(minutes=2)
    d = decide_running(asked, obs(JobState.RUNNING, after), after, POLICY)
    assert isinstance(d, Apply) and (d.case_trigger, d.gpu_trigger) == ("fail", "quarantine")
    assert d.evidence is not None and d.evidence.kind is EvidenceKind.KILL_UNCONFIRMED


def test_kill_confirmed_by_later_observation_releases() -> None:
    asked_at = T0 + timedelta(minutes=11)
    case = running(kill_requested_at=asked_at, kill_reason="timeout")
    seen = asked_at + timedelta(seconds=5)
    d = decide_running(case, obs(JobState.KILLED, seen, processes_gone=True), seen, POLICY)
    assert isinstance(d, Apply) and (d.case_trigger, d.gpu_trigger) == ("fail", "release")
    assert d.evidence is not None and d.evidence.kind is EvidenceKind.KILL_CONFIRMED
    assert d.evidence.proves_termination


def test_unreachable_during_kill_window_quarantines_at_the_end() -> None:
    asked_at = T0
    case = running(kill_requested_at=asked_at, kill_reason="cancel", cancel_requested=True)
    assert isinstance(decide_running(case, UNREACHABLE, T0 + timedelta(minutes=1), POLICY), Wait)
    d = decide_running(case, UNREACHABLE, T0 + timedelta(minutes=3), POLICY)
    assert isinstance(d, Apply) and (d.case_trigger, d.gpu_trigger) == ("cancel", "quarantine")


def test_kill_that_cannot_be_sent_quarantines_at_once() -> None:
    d = decide_kill_unreachable(running(kill_requested_at=T0, kill_reason="timeout"), T0)
    assert (d.case_trigger, d.gpu_trigger) == ("fail", "quarantine")


def test_unknown_status_is_never_guessed() -> None:
    assert isinstance(decide_running(running(), obs(JobState.UNKNOWN), T0, POLICY), Wait)
    assert isinstance(decide_running(running(), UNREACHABLE, T0, POLICY), Wait)


def test_vanished_job_is_retried_then_failed() -> None:
    d = decide_running(running(attempt=1), obs(JobState.ABSENT), T0, POLICY)
    assert isinstance(d, Apply) and d.case_trigger == "requeue"
    assert d.evidence is not None and d.evidence.kind is EvidenceKind.CONFIRMED_ABSENT
    d = decide_running(running(attempt=3), obs(JobState.ABSENT), T0, POLICY)
    assert isinstance(d, Apply) and d.case_trigger == "fail"


def test_cancel_requested_running_job_is_killed() -> None:
    assert decide_running(running(cancel_requested=True), obs(JobState.RUNNING), T0, POLICY) == (
        RequestKill("cancel")
    )


def test_submit_recovery() -> None:
    case = CaseFacts(1, CaseState.SUBMITTING, "L1", 1)
    found = decide_submitting_recovery(case, "9", True, T0, POLICY)
    assert isinstance(found, Apply) and found.case_trigger == "confirm_submitted"
    assert found.gpu_trigger is None
    gone = decide_submitting_recovery(case, None, True, T0, POLICY)
    assert isinstance(gone, Apply) and (gone.case_trigger, gone.gpu_trigger) == (
        "requeue",
        "release",
    )
    assert gone.evidence is not None and gone.evidence.kind is EvidenceKind.NEVER_SUBMITTED
    assert isinstance(decide_submitting_recovery(case, None, False, T0, POLICY), Wait)


def test_submit_errors() -> None:
    case = CaseFacts(1, CaseState.SUBMITTING, "L1", 1)
    unknown = decide_after_submit_error(
        case, "timeout", permanent=False, sent=True, now=T0, policy=POLICY
    )
    assert isinstance(unknown, Wait)
    bad = decide_after_submit_error(
        case, "symlink", permanent=True, sent=False, now=T0, policy=POLICY
    )
    assert isinstance(bad, Apply) and (bad.case_trigger, bad.gpu_trigger) == ("fail", "release")
    last = CaseFacts(1, CaseState.SUBMITTING, "L1", 3)
    exhausted = decide_after_submit_error(
        last, "net", permanent=False, sent=False, now=T0, policy=POLICY
    )
    assert isinstance(exhausted, Apply) and exhausted.case_trigger == "fail"


def test_retrieval_errors_retry_then_fail() -> None:
    case = CaseFacts(1, CaseState.RETRIEVING, "L1", 1, transient_failures=0)
    assert isinstance(decide_retrieval_error(case, "net", permanent=False, policy=POLICY), Wait)
    tired = CaseFacts(
        1, CaseState.RETRIEVING, "L1", 1, transient_failures=POLICY.max_retrieve_failures - 1
    )
    d = decide_retrieval_error(tired, "net", permanent=False, policy=POLICY)
    assert isinstance(d, Apply) and d.case_trigger == "fail" and d.gpu_trigger is None


def test_zombie_recovers_only_on_evidence() -> None:
    gpu = GpuFacts("g", GpuState.ZOMBIE, job_label="L1", job_id="5")
    assert decide_zombie(gpu, obs(JobState.RUNNING)) == RequestKill("zombie")
    assert isinstance(decide_zombie(gpu, UNREACHABLE), Wait)
    assert isinstance(decide_zombie(gpu, obs(JobState.KILLED)), RequestKill)
    d = decide_zombie(gpu, obs(JobState.ABSENT))
    assert isinstance(d, Apply) and d.gpu_trigger == "recover" and d.case_trigger is None
    assert d.evidence is not None and d.evidence.label == "L1"
