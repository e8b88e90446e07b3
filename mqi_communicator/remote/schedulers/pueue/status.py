"""Pure: combine Pueue's view of a task with the wrapper's markers.

Task ids are reused, so a task counts as ours only when its label is ours. Pueue's
``kill`` only signals, and a task restored after a hard crash of pueued may say
``Killed`` while its processes live on. So the wrapper's markers decide; Pueue's view
matters only before the wrapper started (queued) or when it never could.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mqi_communicator.errors import SchedulerUnavailableError
from mqi_communicator.remote.job.markers import MarkerInfo, probe_key, status_from_markers
from mqi_communicator.remote.protocol import JobRef, JobStatus
from mqi_communicator.remote.schedulers.pueue.parse import Observation, TaskInfo
from mqi_communicator.statemachine.jobs import JobState

__all__ = ["MARKER_ONLY_PREFIX", "decide", "found_job", "our_task", "poll_statuses"]

_log = logging.getLogger(__name__)

#: Job id prefix for a job found only through its markers (Pueue lost the task).
MARKER_ONLY_PREFIX = "pgid:"

# Pueue's state names -> ours, for a task whose wrapper has not started yet.
_WAITING: dict[str, JobState] = {
    "Queued": JobState.QUEUED,
    "Stashed": JobState.QUEUED,
    "Locked": JobState.QUEUED,
    # Pueue started `sh -c`, the wrapper has not written its pgid yet.
    "Running": JobState.RUNNING,
    "Paused": JobState.RUNNING,
}
# Results of a Done task whose wrapper never ran: failures before our code ran.
_NEVER_RAN: dict[str, JobState] = {
    "FailedToSpawn": JobState.FAILED,
    "Errored": JobState.FAILED,
    "DependencyFailed": JobState.FAILED,
    "Failed": JobState.FAILED,
    "Killed": JobState.KILLED,
}


def decide(
    ref: JobRef, task: TaskInfo | None, pueue_ok: bool, info: MarkerInfo | None
) -> JobStatus:
    """Combine Pueue's view of ``ref`` with the wrapper's markers (pure).

    Args:
        ref: Our job.
        task: Pueue's task with ``ref.job_id`` if its label is ours, else None.
        pueue_ok: Whether Pueue answered with a readable status.
        info: The markers of ``ref.remote_dir`` (None when the probe had no record).
    """
    marks = status_from_markers(info, ref.label, ref.token)
    if marks.state is not JobState.ABSENT:
        # The wrapper started (or the probe was unreadable): its markers are the truth.
        if marks.state is JobState.RUNNING and task is not None and task.state == "Done":
            return JobStatus(
                JobState.RUNNING,
                detail=f"pueue reports {task.result} but the job's processes are alive",
                started_at=marks.started_at,
                processes_gone=False,
            )
        return marks
    # The wrapper never started here; only Pueue can tell whether it still will.
    if not pueue_ok:
        return JobStatus(
            JobState.UNKNOWN, detail="pueue did not answer and the wrapper has not started"
        )
    if task is None:
        return JobStatus(
            JobState.ABSENT,
            detail=f"no pueue task {ref.job_id} with our label; {marks.detail}",
            processes_gone=marks.processes_gone,
        )
    if task.state in _WAITING:
        state = _WAITING[task.state]
        gone = True if state is JobState.QUEUED else None
        return JobStatus(state, detail=f"pueue: {task.state}", processes_gone=gone)
    if task.state == "Done" and task.result in _NEVER_RAN:
        # "Killed" with no markers may come from a hard daemon crash in the moment between
        # `sh -c` starting and the wrapper writing its pgid: the wrapper may still start.
        # We cannot prove its processes are gone, so we do not claim it (GPU stays held).
        killed = task.result == "Killed"
        return JobStatus(
            _NEVER_RAN[task.result],
            exit_code=task.exit_code,
            detail=f"pueue: {task.result} before the wrapper started",
            processes_gone=None if killed else True,
        )
    # Success without markers, or a state/result this code does not know.
    _log.warning("pueue task %s: unmapped %s/%s", ref.job_id, task.state, task.result)
    return JobStatus(JobState.UNKNOWN, detail=f"pueue: {task.state}/{task.result}, no markers")


def our_task(obs: Observation, ref: JobRef) -> TaskInfo | None:
    """Pueue's task with ``ref.job_id``, if it carries our label."""
    if obs.pueue is None or not ref.job_id.isdigit():
        return None
    task = obs.pueue.tasks.get(int(ref.job_id))
    return task if task is not None and task.label == ref.label else None


def poll_statuses(obs: Observation, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
    """The status of every (non-legacy) ref from one observation."""
    statuses: dict[JobRef, JobStatus] = {}
    for ref in refs:
        status = decide(
            ref,
            our_task(obs, ref),
            obs.pueue is not None,
            obs.markers.get(probe_key(ref.remote_dir, ref.token)),
        )
        if status.state is JobState.UNKNOWN and obs.pueue_problem:
            status = JobStatus(JobState.UNKNOWN, detail=f"{status.detail}; {obs.pueue_problem}")
        statuses[ref] = status
    return statuses


def found_job(obs: Observation, label: str, remote_dir: str, *, where: str) -> JobRef | None:
    """Our task by label (highest id), else a wrapper of ours found by its markers.

    The returned ref holds the token found in the marker directory.

    Raises:
        SchedulerUnavailableError: Pueue did not answer and the markers do not
            show our wrapper, so "not there" cannot be claimed.
    """
    info = obs.markers.get(remote_dir)
    if obs.pueue is not None:
        ids = [t.task_id for t in obs.pueue.tasks.values() if t.label == label]
        if ids:
            token = info.token if info is not None else None
            return JobRef(str(max(ids)), label, remote_dir, token=token)
    if info is not None and info.label == label and info.pgid is not None:
        # Pueue lost the task (crash, wiped state) but our wrapper ran here.
        return JobRef(f"{MARKER_ONLY_PREFIX}{info.pgid}", label, remote_dir, token=info.token)
    if obs.pueue is None:
        raise SchedulerUnavailableError(f"{where}: {obs.pueue_problem}")
    return None
