"""The wall clock steps back (NTP) between a kill request and its confirmation.

Found while building the safety checks: ``decide_running`` offered KILL_CONFIRMED
evidence built from an observation made *before* the kill request; the guard refused
it (safe), but the refusal escaped ``Reconciler.tick`` and every tick failed until the
clock caught up. Only a later observation may confirm a kill: the decision now waits.
"""

from __future__ import annotations

from datetime import timedelta

from mqi_communicator.statemachine import GpuState

from .stateful_machine import SafetyMachine


def test_kill_confirmation_waits_for_an_observation_after_the_request() -> None:
    m = SafetyMachine()
    try:
        m.case_arrives()
        m.tick()  # claim, upload, submit
        m.job_event(pick=0, event="start")
        m.tick()  # the job is seen running: the timeout clock starts
        m.clock.now += timedelta(hours=2)
        m.tick()  # timed out: kill requested at this instant
        case = m.store.get_case(m.case_ids[0])
        assert case.kill_requested_at is not None
        m.clock.now -= timedelta(minutes=1)  # NTP steps the clock back
        m.job_event(pick=0, event="kill_takes_effect")
        m.tick()  # must not raise; nothing confirmed by an earlier observation
        gpu = m.store.get_gpu(str(case.gpu_name))
        assert gpu.status is GpuState.ASSIGNED, gpu
        m.clock.now += timedelta(minutes=3)
        m.tick()  # a later observation confirms the kill
        assert m.store.get_gpu(str(case.gpu_name)).status is GpuState.AVAILABLE
        m.safe_and_consistent()
    finally:
        m.busy = True  # no liveness run here
        m.teardown()
