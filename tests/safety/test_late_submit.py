"""A submit cut off by the network lands AFTER the recovery lookup said "no such job".

The engine's lookup by label cannot see a submit that is still on its way. Before it
frees the GPU with NEVER_SUBMITTED evidence it revokes the job's start claim
(``markers.revoke_snippet``): a late submit then lands as a no-op, and a job that had
already started makes the revoke fail, so the GPU stays with it. The real Reconciler and
Store run against the simulated world (``sim_world``), which honours the same claim.
"""

from __future__ import annotations

from datetime import timedelta

from mqi_communicator.statemachine import CaseState, GpuState
from mqi_communicator.statemachine.jobs import JobState

from .checks import safety
from .stateful_machine import SafetyMachine


def _cut_off_submit(m: SafetyMachine) -> int:
    """One case whose submit is cut off on its way; then the host is back, time passes."""
    m.case_arrives()
    m.world.submit_mode = "lost_in_flight"
    m.tick()
    case_id = m.case_ids[0]
    assert m.store.get_case(case_id).status is CaseState.SUBMITTING
    assert m.world.in_flight, "the submit should still be on its way"
    m.world.submit_mode = "ok"
    return case_id


def test_submit_landing_after_the_recovery_lookup() -> None:
    m = SafetyMachine()
    try:
        case_id = _cut_off_submit(m)
        label = m.store.get_case(case_id).label
        for _ in range(3):  # host-down backoff over, then recovery by label
            m.clock.now += timedelta(minutes=10)
            m.tick()
            if m.store.get_case(case_id).attempt > 1:
                break
        assert m.store.get_case(case_id).attempt > 1, "the lost submit was never released"
        m.world.land_in_flight()  # the old submit reaches the scheduler now
        late = m.world.ours_by_label(str(label))
        assert late is not None
        m.job_event(pick=0, event="start")
        broken = safety(m.store.list_gpus(), m.world)
        assert not broken, broken
        assert not late.alive and late.state is JobState.SUCCEEDED, late
        assert m.world.revoked
        m.safe_and_consistent()
        m.busy = False  # liveness: the case still comes home
    finally:
        m.teardown()


def test_revoke_refused_once_the_job_started() -> None:
    """The job lands and starts between the lookup and the revoke: the GPU stays with it."""
    m = SafetyMachine()
    try:
        case_id = _cut_off_submit(m)
        m.world.start_before_revoke = True
        for _ in range(3):  # host-down backoff over, then recovery by label
            m.clock.now += timedelta(minutes=10)
            m.tick()
            if not m.world.start_before_revoke:
                break
        assert not m.world.start_before_revoke, "no revoke was ever tried"
        assert not m.world.revoked
        job = m.world.jobs[0]
        assert job.alive and job.state is JobState.RUNNING, job
        case = m.store.get_case(case_id)
        assert case.attempt == 1, "released although the job had started"
        assert m.store.get_gpu(str(case.gpu_name)).status is GpuState.ASSIGNED
        m.safe_and_consistent()
        m.tick()  # the next lookup finds the job by label
        assert m.store.get_case(case_id).status is not CaseState.SUBMITTING
        m.safe_and_consistent()
        m.busy = False
    finally:
        m.teardown()
