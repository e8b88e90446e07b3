"""The Pueue executor: runs the builders' commands once and hands the output to the parsers.

Every operation is ONE remote command (``kill`` may need three). Facts it honours
(``shared/recipes/pueue-contract.md``):

* ``pueue kill`` only sends a signal (to the task's group), and Pueue may have lost the
  task after a crash while the wrapper lives on, so ``kill`` also ends every process
  carrying the job's token. Whether a task is ours and what it says is decided in
  :mod:`.status` (pure); the command text is built in :mod:`.commands`, and Pueue's
  output is read in :mod:`.parse`.
* Jobs adopted from the original system (``JobRef.legacy``) have no wrapper: they are
  polled and killed by :mod:`.legacy` (Pueue's view of the task id + legacy label).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mqi_communicator.errors import (
    ConfigError,
    RemoteCommandError,
    SchedulerOutputError,
    SchedulerUnavailableError,
    SubmissionRejectedError,
)
from mqi_communicator.remote.job.markers import (
    poll_script,
    probe_key,
    probe_snippet,
    require_token,
    run_script,
)
from mqi_communicator.remote.job.process_kill import kill_job
from mqi_communicator.remote.protocol import JobRef, JobSpec, JobStatus, Transport
from mqi_communicator.remote.schedulers.pueue import legacy as pueue_legacy
from mqi_communicator.remote.schedulers.pueue.commands import (
    EXIT_INSTALL_FAILED,
    kill_command,
    observe_script,
    submit_script,
)
from mqi_communicator.remote.schedulers.pueue.parse import (
    Observation,
    is_unavailable,
    parse_observation,
    parse_task_id,
)
from mqi_communicator.remote.schedulers.pueue.status import found_job, our_task, poll_statuses

__all__ = ["PueueScheduler"]

_log = logging.getLogger(__name__)


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
        script = submit_script(self._pueue, spec, group)
        result = self._transport.run(script, timeout=self._timeout, stdin=stdin)
        if result.exit_code == EXIT_INSTALL_FAILED:
            raise RemoteCommandError(
                f"{self._host}: could not install the wrapper in {spec.remote_dir!r}: "
                f"{result.stderr.strip()}",
                exit_code=EXIT_INSTALL_FAILED,
                stderr=result.stderr,
            )
        if result.exit_code != 0:
            if is_unavailable(result.stderr):
                raise SchedulerUnavailableError(f"{self._host}: pueued: {result.stderr.strip()}")
            raise SubmissionRejectedError(
                f"{self._host}: pueue add refused {spec.label!r}: {result.stderr.strip()}",
                exit_code=result.exit_code,
                stderr=result.stderr,
            )
        task_id = parse_task_id(result.stdout)
        if task_id is None:
            raise SchedulerOutputError(
                f"{self._host}: pueue add printed no task id: {result.stdout[-500:]!r}"
            )
        return JobRef(task_id, spec.label, spec.remote_dir, token=spec.token)

    def _observe(self, probe: str) -> Observation:
        """``pueue status --json`` and the marker ``probe``, in one command."""
        script = observe_script(self._pueue, probe)
        result = run_script(self._transport, script, timeout=self._timeout)
        obs = parse_observation(result.stdout, result.stderr)
        if obs.pueue is None:
            _log.warning(
                "%s: pueue status unusable (%s); raw: %r",
                self._host,
                obs.pueue_problem,
                result.stdout[-2000:],
            )
        return obs

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        """``pueue status --json`` plus the marker probe for all ``refs``, in one command."""
        statuses = pueue_legacy.poll(self._transport, self._pueue, refs, self._timeout)
        refs = [r for r in refs if not r.legacy]
        if not refs:
            return statuses
        statuses.update(poll_statuses(self._observe(poll_script(refs)), refs))
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
        task = our_task(obs, ref)
        if task is not None and task.state in ("Running", "Paused"):
            result = self._transport.run(
                kill_command(self._pueue, ref.job_id), timeout=self._timeout
            )
            if result.exit_code != 0 and is_unavailable(result.stderr):
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
        return found_job(obs, label, remote_dir, where=self._host)
