"""Pure combination of Pueue's view with the wrapper's markers, on the edge cases."""

from __future__ import annotations

from mqi_communicator.remote.job.markers import MarkerInfo
from mqi_communicator.remote.protocol import JobRef
from mqi_communicator.remote.schedulers.pueue.parse import TaskInfo
from mqi_communicator.remote.schedulers.pueue.status import decide
from mqi_communicator.statemachine.decide import JobObservation, _ended
from mqi_communicator.statemachine.jobs import JobState

T = "4" * 32
REF = JobRef(job_id="4", label="mqic-1-a1", remote_dir="/base/mqic_case_1_a1", token=T)
#: The case dir exists with the wrapper installed, but the wrapper never wrote a marker
#: and no process carries the token.
NO_MARKERS = MarkerInfo(dir_exists=True, label="mqic-1-a1", token=T, token_procs=0)


def task(result: str) -> TaskInfo:
    return TaskInfo(
        task_id=4,
        label=REF.label,
        group="gpu0",
        state="Done",
        result=result,
        exit_code=None,
        start=None,
    )


def test_killed_before_the_wrapper_wrote_markers_is_not_proof_of_termination() -> None:
    # After a hard pueued crash the restored task says Killed although `sh -c` may be
    # just about to start the wrapper: nothing proves the processes are gone.
    status = decide(REF, task("Killed"), True, NO_MARKERS)
    assert status.state is JobState.KILLED
    assert status.processes_gone is None
    from datetime import UTC, datetime

    obs = JobObservation(
        True, datetime.now(UTC), status.state, processes_gone=status.processes_gone
    )
    assert not _ended(obs)


def test_failed_to_spawn_is_terminal() -> None:
    status = decide(REF, task("FailedToSpawn"), True, NO_MARKERS)
    assert status.state is JobState.FAILED and status.processes_gone is True
