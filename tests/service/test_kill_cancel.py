"""Timeout, kill and zombie, and cancel: the GPU is freed only on evidence the job is gone."""

from __future__ import annotations

import pytest

from mqi_communicator import CaseState, EvidenceKind, GpuState, InvalidTransitionError
from tests.infra.processes import group_alive

from .conftest import Workspace, only_case, status_is, tick_until

#: Ignores SIGTERM (so does its `sleep`, which inherits the ignored disposition):
#: only the SIGKILL after the scheduler's grace period ends it.
STUBBORN = "trap '' TERM; sleep 300"
#: Stubborn only for cases that carry a ``stuck.flag`` file; the others complete.
STUBBORN_IF_FLAGGED = (
    "if [ -f stuck.flag ]; then trap '' TERM; sleep 300; fi; mkdir -p output; echo ok > output/r"
)


def job_pgid(comm_case_job_id: str | None) -> int:
    assert comm_case_job_id is not None and comm_case_job_id.isdigit()
    return int(comm_case_job_id)


def test_timeout_kills_and_releases_gpu_only_after_confirmation(ws: Workspace) -> None:
    config = ws.config(
        command=STUBBORN,
        engine={"job_timeout_s": 1, "kill_confirm_s": 60},
        scheduler={"kill_grace_s": 2},
    )
    comm = ws.communicator(config)
    ws.drop_case("slow case")
    tick_until(
        comm,
        lambda: bool(comm.cases()) and only_case(comm).kill_requested_at is not None,
        "kill requested after the timeout",
    )
    case = only_case(comm)
    assert case.kill_reason == "timeout" and case.status is CaseState.RUNNING
    pgid = job_pgid(case.job_id)
    # TERM was sent but is ignored: while the group lives the GPU stays assigned.
    saw_alive_and_assigned = False
    while group_alive(pgid):
        comm.tick()
        gpu = comm.gpus()[0]
        if group_alive(pgid):
            assert gpu.status is GpuState.ASSIGNED, "GPU freed while the job still ran"
            saw_alive_and_assigned = True
    assert saw_alive_and_assigned
    tick_until(comm, status_is(comm, case.id, CaseState.FAILED), "failed after the kill")
    done = comm.case(case.id)
    assert done.failure_reason is not None and "timed out" in done.failure_reason
    gpu = comm.gpus()[0]
    assert gpu.status is GpuState.AVAILABLE
    (release,) = [t for t in comm.history(gpu_name=gpu.name) if t.trigger == "release"]
    assert release.evidence is not None and release.evidence.kind is EvidenceKind.KILL_CONFIRMED
    assert release.evidence.requested_at is not None
    assert release.evidence.observed_at > release.evidence.requested_at
    assert not group_alive(pgid)


def test_unconfirmed_kill_quarantines_gpu_until_the_job_is_gone(ws: Workspace) -> None:
    """Kill window shorter than the SIGKILL grace: zombie, no claim, recovery on evidence."""
    config = ws.config(
        command=STUBBORN_IF_FLAGGED,
        engine={"job_timeout_s": 1, "kill_confirm_s": 0.5},
        scheduler={"kill_grace_s": 3},
    )
    comm = ws.communicator(config)
    ws.drop_case("stuck", {"stuck.flag": "", "plan.dcm": "p"})
    tick_until(
        comm,
        lambda: bool(comm.cases()) and only_case(comm).status is CaseState.FAILED,
        "failed on an unconfirmed kill",
    )
    stuck = only_case(comm)
    assert stuck.failure_reason is not None and "GPU quarantined" in stuck.failure_reason
    (gpu,) = comm.gpus()
    assert gpu.status is GpuState.ZOMBIE and gpu.job_id == stuck.job_id
    pgid = job_pgid(stuck.job_id)
    assert group_alive(pgid)
    # A new case must not get the zombie GPU while the stray job may still run.
    ws.drop_case("next")
    tick_until(comm, lambda: len(comm.cases()) == 2, "second case registered")
    nxt = next(c for c in comm.cases() if c.name == "next")
    while group_alive(pgid):
        comm.tick()
        if group_alive(pgid):
            assert comm.gpus()[0].status is GpuState.ZOMBIE
            assert comm.case(nxt.id).status is CaseState.SUBMITTED
    tick_until(comm, status_is(comm, nxt.id, CaseState.COMPLETED), "next case completed")
    recover = [t for t in comm.history(gpu_name=gpu.name) if t.trigger == "recover"]
    assert len(recover) == 1 and recover[0].evidence is not None
    assert recover[0].evidence.proves_termination
    assert recover[0].evidence.label == stuck.label


def test_cancel_running_case_kills_its_job(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(command="sleep 300"))
    ws.drop_case("to cancel")
    tick_until(
        comm, lambda: bool(comm.cases()) and only_case(comm).status is CaseState.RUNNING, "running"
    )
    case = only_case(comm)
    pgid = job_pgid(case.job_id)
    flagged = comm.cancel(case.id)
    assert flagged.status is CaseState.RUNNING and flagged.cancel_requested
    tick_until(comm, status_is(comm, case.id, CaseState.CANCELLED), "cancelled")
    assert not group_alive(pgid)
    done = comm.case(case.id)
    assert done.failure_reason == "cancelled by operator"
    assert comm.gpus()[0].status is GpuState.AVAILABLE
    with pytest.raises(InvalidTransitionError, match="already ended"):
        comm.cancel(case.id)


def test_cancel_waiting_case_is_immediate(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(command="sleep 300"))
    comm.set_gpu_offline("local/gpu0", True)  # nothing can start
    ws.drop_case("waiting")
    tick_until(comm, lambda: bool(comm.cases()), "registered")
    case = only_case(comm)
    assert case.status is CaseState.SUBMITTED
    assert comm.cancel(case.id).status is CaseState.CANCELLED
    assert not any(t.trigger == "claim" for t in comm.history(case_id=case.id))
