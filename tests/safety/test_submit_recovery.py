"""A submit whose outcome is unknown is recovered only on an answer, never on silence.

The submit created the job and then the connection dropped (outcome unknown: the case
stays ``submitting``). When the engine comes back to it the host is unreachable: that
is no answer, so the case waits and the GPU stays with the job. The real Reconciler
and Store run against the simulated world.
"""

from __future__ import annotations

from datetime import timedelta

from mqi_communicator.statemachine import CaseState

from .stateful_machine import SafetyMachine


def test_unreachable_during_recovery_is_not_not_found() -> None:
    m = SafetyMachine()
    try:
        m.case_arrives()
        m.world.submit_mode = "timeout_after_create"
        m.tick()
        case_id = m.case_ids[0]
        assert m.store.get_case(case_id).status is CaseState.SUBMITTING
        assert [j.label for j in m.world.alive_ours()], "the submit should have created the job"
        m.world.submit_mode, m.world.reachable = "ok", False
        m.clock.now += timedelta(minutes=10)  # host backoff over: the recovery asks the host
        m.tick()
        assert m.store.get_case(case_id).status is CaseState.SUBMITTING
        m.safe_and_consistent()  # the GPU still holds the job that was created
        m.busy = False  # liveness: once the host answers, the job is found by label
    finally:
        m.teardown()
