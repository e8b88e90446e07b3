"""Jobs adopted from the original system: Pueue tasks labelled ``mqic_case_<id>``.

The original MQI Communicator ran its Pueue tasks without our wrapper, so such a job has
no marker files, no token and no directory of ours. What we can know about it is
Pueue's view of the task that carries BOTH its id and its legacy label (an id alone may
belong to a stranger after ``clean``/``remove``; a ref without a label matches nothing),
plus one more fact Pueue itself provides: every process Pueue starts carries
``PUEUE_GROUP=<group>`` in its environment. So one command reads ``pueue status --json``
and lists the ``PUEUE_GROUP`` of the service user's live processes
(``/proc/<pid>/environ``), and:

* Running/Paused -> RUNNING; Queued/Stashed/Locked -> QUEUED;
* Done -> its result (Success, Failed(code), Killed, ...); no task with that id and
  label while Pueue answers -> ABSENT. Either way ``processes_gone`` is True only when
  no live process carries the job's group (the task's, and the group recorded for the
  job), False when one does (so a ``Killed`` restored after a hard daemon crash, or an
  id now reused by a stranger, never frees the GPU while the old processes live), None
  when the scan is unavailable (then ``Killed`` is not accepted as an end);
* Pueue unreadable, a ref without a label or with a non-numeric id -> UNKNOWN.

What this cannot prove (README, "Legacy jobs"): a process that cleared its environment,
or a job whose task Pueue forgot (state wiped, e.g. by the v3 -> v4 upgrade) while its
processes live on: the task is ABSENT and nothing else names it.

A kill is ``pueue kill <id>``, sent only after the same id+label check, for a task that
is Running or Paused; anything else has nothing to kill.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from mqi_communicator.errors import SchedulerOutputError, SchedulerUnavailableError
from mqi_communicator.remote.protocol import JobRef, JobStatus, Transport
from mqi_communicator.remote.quoting import join_argv
from mqi_communicator.remote.schedulers.pueue.commands import framed_status
from mqi_communicator.remote.schedulers.pueue.parse import PueueStatus, TaskInfo, read_framed_status
from mqi_communicator.statemachine.jobs import JobState

__all__ = ["kill", "legacy_status", "matching_tasks", "parse_output", "poll", "script"]

_log = logging.getLogger(__name__)

_BEGIN, _END = "@mqi-legacy-begin", "@mqi-legacy-end"
_SCAN, _SCAN_END = "@mqi-legacy-scan", "@mqi-legacy-scan-end"
_VAR = "PUEUE_GROUP="
# GNU grep reads every environ file in one process; unreadable ones (other users' processes)
# are skipped. The self-test keeps a grep without -z from reporting "nothing alive".
_SCAN_SNIPPET = (
    f"if [ -r /proc/self/environ ] && printf '{_VAR}x\\0' | grep -qzx '{_VAR}x' 2>/dev/null; "
    f"then echo '{_SCAN} ok'; grep -zaho '^{_VAR}.*' /proc/[0-9]*/environ 2>/dev/null "
    f"| tr '\\0' '\\n'; echo '{_SCAN_END}'; else echo '{_SCAN} unavailable'; fi\n"
)

_WAITING = {"Queued": JobState.QUEUED, "Stashed": JobState.QUEUED, "Locked": JobState.QUEUED}
_LIVE = {"Running", "Paused"}
_RESULTS = {
    "Success": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "FailedToSpawn": JobState.FAILED,
    "Errored": JobState.FAILED,
    "DependencyFailed": JobState.FAILED,
    "Killed": JobState.KILLED,
}


def script(pueue: Sequence[str]) -> str:
    """The one remote command: ``pueue status --json`` and the environment scan."""
    return f"{framed_status(pueue, _BEGIN, _END)}\n{_SCAN_SNIPPET}"


def parse_output(stdout: str) -> tuple[PueueStatus | None, str, Counter[str] | None]:
    """(Pueue's status or None, why not, live processes per group or None if unknown)."""
    status, problem, after = read_framed_status(stdout, _BEGIN, _END)
    groups: Counter[str] | None = None
    _head, found, scan = after.partition(f"{_SCAN} ok\n")
    if found and f"\n{_SCAN_END}" in f"\n{scan}":  # complete: a cut-off list proves nothing
        listed = f"\n{scan}".split(f"\n{_SCAN_END}", 1)[0]
        groups = Counter(line[len(_VAR) :] for line in listed.splitlines() if line.startswith(_VAR))
    return status, problem, groups


def matching_tasks(ref: JobRef, status: PueueStatus) -> list[TaskInfo]:
    """The tasks that are ``ref``'s job: its label AND (when known) its task id."""
    if not ref.label:
        return []
    if ref.job_id:
        task = status.tasks.get(int(ref.job_id)) if ref.job_id.isdigit() else None
        return [task] if task is not None and task.label == ref.label else []
    # No id was ever recorded (e.g. a legacy submit cut short): every task so labelled.
    return sorted(
        (t for t in status.tasks.values() if t.label == ref.label), key=lambda t: t.task_id
    )


def legacy_status(
    ref: JobRef, status: PueueStatus | None, groups: Counter[str] | None, problem: str = ""
) -> JobStatus:
    """Pueue's view of legacy job ``ref`` (pure); see the module docstring."""
    if not ref.label:
        return JobStatus(JobState.UNKNOWN, detail="legacy job without a label: nothing matches it")
    if ref.job_id and not ref.job_id.isdigit():
        return JobStatus(JobState.UNKNOWN, detail=f"legacy job id {ref.job_id!r} is not a task id")
    if status is None:
        return JobStatus(JobState.UNKNOWN, detail=f"pueue did not answer: {problem}")
    tasks = matching_tasks(ref, status)
    gone = _gone(groups, {ref.group, *(t.group for t in tasks)} - {None})
    if not tasks:
        stranger = status.tasks.get(int(ref.job_id)) if ref.job_id else None
        note = f" (task {ref.job_id} is now {stranger.label!r})" if stranger is not None else ""
        return JobStatus(
            JobState.ABSENT,
            detail=f"legacy: no pueue task {ref.job_id} {ref.label!r}{note}; {_ALIVE[gone]}",
            processes_gone=gone,
        )
    live = [t for t in tasks if t.state in _LIVE]
    if live:
        return JobStatus(
            JobState.RUNNING,
            detail=f"legacy: pueue {live[0].state}",
            started_at=live[0].start,
            processes_gone=False,
        )
    waiting = [t for t in tasks if t.state in _WAITING]
    if waiting:
        return JobStatus(_WAITING[waiting[0].state], detail=f"legacy: pueue {waiting[0].state}")
    last = tasks[-1]
    state = _RESULTS.get(last.result or "") if last.state == "Done" else None
    if state is None:
        _log.warning("legacy task %s: unmapped %s/%s", last.task_id, last.state, last.result)
        return JobStatus(JobState.UNKNOWN, detail=f"legacy: pueue {last.state}/{last.result}")
    return JobStatus(
        state,
        exit_code=0 if state is JobState.SUCCEEDED else last.exit_code,
        detail=f"legacy: pueue Done/{last.result}; {_ALIVE[gone]}",
        processes_gone=gone,
    )


_ALIVE = {
    True: "no process of its group left",
    False: "a process of its Pueue group still lives",
    None: "process scan unavailable",
}


def _gone(groups: Counter[str] | None, names: set[str | None]) -> bool | None:
    """True: no live process carries any of ``names``; None: the scan was unavailable."""
    if groups is None or not names:
        return None
    return not any(groups.get(name or "", 0) for name in names)


def poll(
    transport: Transport, pueue: Sequence[str], refs: Sequence[JobRef], timeout: float
) -> dict[JobRef, JobStatus]:
    """Status of every legacy ref among ``refs`` (one command; none if there is none)."""
    legacy = [r for r in refs if r.legacy]
    if not legacy:
        return {}
    result = transport.run(script(pueue), timeout=timeout)
    status, problem, groups = parse_output(result.stdout)
    if status is None:
        _log.warning(
            "%s: legacy poll: %s; raw: %r", transport.host_name, problem, result.stdout[-2000:]
        )
    return {ref: legacy_status(ref, status, groups, problem) for ref in legacy}


def kill(transport: Transport, pueue: Sequence[str], ref: JobRef, timeout: float) -> None:
    """``pueue kill`` the legacy job's running task(s), after the id+label check.

    Returning is not evidence: the next poll must see the task ended.

    Raises:
        SchedulerUnavailableError: Pueue did not answer (nothing was killed).
        SchedulerOutputError: Pueue's answer was unreadable (nothing was killed).
    """
    result = transport.run(script(pueue), timeout=timeout)
    status, problem, _groups = parse_output(result.stdout)
    if status is None:
        if "connect to the daemon" in result.stderr.lower():
            raise SchedulerUnavailableError(f"{transport.host_name}: pueued: {problem}")
        raise SchedulerOutputError(f"{transport.host_name}: legacy kill: {problem}")
    ids = [str(t.task_id) for t in matching_tasks(ref, status) if t.state in _LIVE]
    if not ids:
        return  # nothing of it runs: nothing to kill
    done = transport.run(join_argv([*pueue, "kill", *ids]), timeout=timeout)
    if done.exit_code != 0:
        # Ended in between (pueue refuses Done tasks): the next poll tells.
        _log.info("%s: pueue kill %s: %s", transport.host_name, ids, done.stderr.strip()[:300])
