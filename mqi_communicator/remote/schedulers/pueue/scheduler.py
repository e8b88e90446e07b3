"""The Pueue scheduler adapter: command builders, one decision function, thin executors.

Every operation is ONE remote command (``kill`` may need three). Facts it honours
(``shared/recipes/pueue-contract.md``):

* Task ids are reused, so a task counts as ours only when its label is ours.
* ``pueue kill`` only sends a signal (to the task's group), and after a hard crash of
  pueued a restored task says ``Killed`` while its processes live on. So the wrapper's
  markers decide: a live process carrying the job's token (or the wrapper's group)
  means RUNNING whatever Pueue says; an exit marker gives the result; Pueue's view
  matters only before the wrapper started (queued) or when it never could
  (FailedToSpawn, ...). ``kill`` also ends every process carrying the token.
* Pueue joins ``add``'s command words with spaces and runs them with ``sh -c``, so the
  wrapper argv is passed as ONE pre-quoted word.
* Jobs adopted from the original system (``JobRef.legacy``) have no wrapper: they are
  polled and killed by :mod:`.pueue_legacy` (Pueue's view of the task id + legacy label).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mqi_communicator.errors import (
    ConfigError,
    RemoteCommandError,
    SchedulerOutputError,
    SchedulerUnavailableError,
    SubmissionRejectedError,
)
from mqi_communicator.remote.job.markers import (
    READ_TOKEN,
    MarkerInfo,
    install_snippet,
    parse_probe,
    poll_script,
    probe_key,
    probe_snippet,
    require_token,
    run_script,
    status_from_markers,
    wrapper_argv,
)
from mqi_communicator.remote.job.process_kill import kill_job
from mqi_communicator.remote.protocol import JobRef, JobSpec, JobStatus, Transport
from mqi_communicator.remote.schedulers.local.scheduler import job_command
from mqi_communicator.remote.schedulers.pueue import legacy as pueue_legacy
from mqi_communicator.remote.schedulers.pueue.parse import PueueStatus, TaskInfo, parse_status
from mqi_communicator.remote.transport.quoting import join_argv
from mqi_communicator.statemachine.jobs import JobState

__all__ = ["MARKER_ONLY_PREFIX", "PueueScheduler", "decide"]

_log = logging.getLogger(__name__)

#: Job id prefix for a job found only through its markers (Pueue lost the task).
MARKER_ONLY_PREFIX = "pgid:"

_BEGIN = "@mqi-pueue-begin"
_END = "@mqi-pueue-end"

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


def _unavailable(stderr: str) -> bool:
    text = stderr.lower()
    return "connect to the daemon" in text or "failed to initialize client" in text


@dataclass(frozen=True)
class _Observation:
    """What one status+probe command saw; ``pueue`` is None when Pueue did not answer."""

    pueue: PueueStatus | None
    pueue_problem: str
    markers: dict[str, MarkerInfo]


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


class PueueScheduler:
    """Submits, polls and kills jobs through Pueue on one host.

    Args:
        transport: The host's transport.
        pueue_command: The argv prefix that runs pueue there, e.g.
            ``("pueue", "-c", "/etc/mqi/pueue.yml")``.
        timeout: Seconds allowed per remote command.
        kill_grace_s: TERM-to-KILL delay when killing a wrapper Pueue no longer tracks.
    """

    def __init__(
        self,
        transport: Transport,
        pueue_command: Sequence[str] = ("pueue",),
        *,
        timeout: float = 60.0,
        kill_grace_s: float = 10.0,
    ) -> None:
        self._transport = transport
        self._pueue = list(pueue_command)
        self._timeout = timeout
        self._grace = kill_grace_s

    @property
    def _host(self) -> str:
        return self._transport.host_name

    def submit(self, spec: JobSpec) -> JobRef:
        """Install the wrapper and ``pueue add`` it, in one remote command.

        Raises:
            SubmissionRejectedError: Pueue refused (e.g. unknown group).
            SchedulerUnavailableError: pueued is not running.
            RemoteCommandError: the wrapper could not be installed.
            SchedulerOutputError: Pueue accepted but printed no id (recover by label).
        """
        group = spec.gpu.pueue_group
        if not group:
            raise ConfigError(f"GPU {spec.gpu.name!r} has no pueue_group")
        stdin = require_token(spec)
        inner = join_argv(wrapper_argv(spec.remote_dir, spec.label, job_command(spec)))
        add = [*self._pueue, "add", "--print-task-id", "--label", spec.label]
        add += ["--group", group, "--", inner]
        script = (
            f"{READ_TOKEN}{install_snippet(spec.remote_dir, spec.label)} || exit 97\n"
            f"{join_argv(add)} </dev/null"
        )
        result = self._transport.run(script, timeout=self._timeout, stdin=stdin)
        if result.exit_code == 97:
            raise RemoteCommandError(
                f"{self._host}: could not install the wrapper in {spec.remote_dir!r}: "
                f"{result.stderr.strip()}",
                exit_code=97,
                stderr=result.stderr,
            )
        if result.exit_code != 0:
            if _unavailable(result.stderr):
                raise SchedulerUnavailableError(f"{self._host}: pueued: {result.stderr.strip()}")
            raise SubmissionRejectedError(
                f"{self._host}: pueue add refused {spec.label!r}: {result.stderr.strip()}",
                exit_code=result.exit_code,
                stderr=result.stderr,
            )
        lines = result.stdout.strip().splitlines()
        if not lines or not lines[-1].strip().isdigit():
            raise SchedulerOutputError(
                f"{self._host}: pueue add printed no task id: {result.stdout[-500:]!r}"
            )
        return JobRef(lines[-1].strip(), spec.label, spec.remote_dir, token=spec.token)

    def _observe(self, probe: str) -> _Observation:
        """``pueue status --json`` and the marker ``probe``, in one command."""
        status_cmd = join_argv([*self._pueue, "status", "--json"])
        script = f"echo {_BEGIN}\n{status_cmd}\nprintf '\\n{_END} %s\\n' \"$?\"\n{probe}"
        result = run_script(self._transport, script, timeout=self._timeout)
        out = result.stdout
        _banner, sep, rest = out.partition(f"{_BEGIN}\n")
        body, sep2, after = rest.partition(f"\n{_END} ")
        markers = parse_probe(after)
        rc = after.split("\n", 1)[0].strip()
        if not sep or not sep2:
            problem = "status output not delimited (truncated?)"
        elif rc != "0":
            problem = f"pueue status exit {rc}: {result.stderr.strip()[-500:]}"
        else:
            try:
                return _Observation(parse_status(body), "", markers)
            except SchedulerOutputError as err:
                problem = str(err)
        _log.warning("%s: pueue status unusable (%s); raw: %r", self._host, problem, out[-2000:])
        return _Observation(None, problem, markers)

    @staticmethod
    def _our_task(obs: _Observation, ref: JobRef) -> TaskInfo | None:
        if obs.pueue is None or not ref.job_id.isdigit():
            return None
        task = obs.pueue.tasks.get(int(ref.job_id))
        return task if task is not None and task.label == ref.label else None

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        """``pueue status --json`` plus the marker probe for all ``refs``, in one command."""
        statuses = pueue_legacy.poll(self._transport, self._pueue, refs, self._timeout)
        refs = [r for r in refs if not r.legacy]
        if not refs:
            return statuses
        obs = self._observe(poll_script(refs))
        for ref in refs:
            status = decide(
                ref,
                self._our_task(obs, ref),
                obs.pueue is not None,
                obs.markers.get(probe_key(ref.remote_dir, ref.token)),
            )
            if status.state is JobState.UNKNOWN and obs.pueue_problem:
                status = JobStatus(JobState.UNKNOWN, detail=f"{status.detail}; {obs.pueue_problem}")
            statuses[ref] = status
        return statuses

    def kill(self, ref: JobRef) -> None:
        """Ask for the job to be killed; returning is NOT evidence that it is gone.

        ``pueue kill <id>`` when Pueue runs our task, and in any case the token killer
        (:mod:`~mqi_communicator.remote.job.process_kill`) for every process that carries the
        job's token: Pueue signals only the task's group, and may have lost the task
        (after a crash) while the wrapper lives on.
        """
        if ref.legacy:
            pueue_legacy.kill(self._transport, self._pueue, ref, self._timeout)
            return
        obs = self._observe(poll_script([ref]))
        task = self._our_task(obs, ref)
        if task is not None and task.state in ("Running", "Paused"):
            result = self._transport.run(
                join_argv([*self._pueue, "kill", ref.job_id]), timeout=self._timeout
            )
            if result.exit_code != 0 and _unavailable(result.stderr):
                raise SchedulerUnavailableError(f"{self._host}: pueued: {result.stderr.strip()}")
            # Non-zero otherwise: ended in between; the token killer still runs.
        info = obs.markers.get(probe_key(ref.remote_dir, ref.token))
        if ref.token is not None:
            if info is not None and info.token is None and not info.wrapper_started:
                return  # never installed: nothing of ours can run
            kill_job(self._transport, ref, grace_s=self._grace, timeout=self._timeout)
            return
        # A job started before tokens existed: its in-case markers name its group.
        if info is None or info.label != ref.label or info.pgid is None:
            return  # the wrapper never started: nothing of ours to signal
        if info.group_alive is False:
            return
        kill_job(self._transport, ref, grace_s=self._grace, timeout=self._timeout, pgid=info.pgid)

    def find_by_label(self, label: str, remote_dir: str) -> JobRef | None:
        """Our task by label (highest id), else a live wrapper found by its markers.

        The returned ref holds the token found in the marker directory.

        Raises:
            SchedulerUnavailableError: Pueue did not answer and the markers do not
                show our wrapper, so "not there" cannot be claimed.
        """
        obs = self._observe(probe_snippet([remote_dir]))
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
            raise SchedulerUnavailableError(f"{self._host}: {obs.pueue_problem}")
        return None
