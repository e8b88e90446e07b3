"""The Slurm scheduler adapter: build a command, run it once, parse the answer.

Every job runs under the marker wrapper (:mod:`mqi_communicator.remote.job.markers`). Slurm's
word is used while the controller remembers the job; once it has forgotten (``MinJobAge``,
a controller restart that lost its state, an id reused by another job) the wrapper's
markers decide. Each public call is ONE remote command, whatever the number of jobs.

Client calls need ``SLURM_CONF`` when the config is not in ``/etc/slurm``: give it to the
transport's ``env``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mqi_communicator.errors import (
    RemoteCommandError,
    SchedulerUnavailableError,
    SubmissionRejectedError,
)
from mqi_communicator.remote.job.markers import require_token, run_script, token_stdin
from mqi_communicator.remote.protocol import CommandResult, JobRef, JobSpec, JobStatus, Transport
from mqi_communicator.remote.schedulers.slurm.commands import (
    MARKER_KILL_RECORD,
    find_command,
    kill_script,
    poll_command,
    sbatch_argv,
    submit_script,
)
from mqi_communicator.remote.schedulers.slurm.parse import (
    SlurmError,
    classify_stderr,
    is_job_id,
    parse_sbatch_id,
)
from mqi_communicator.remote.schedulers.slurm.status import (
    found_job,
    poll_statuses,
    read_answer,
    unavailable_error,
)

__all__ = ["SlurmScheduler"]

_log = logging.getLogger(__name__)


class SlurmScheduler:
    """Submits, polls and kills jobs through ``sbatch``/``squeue``/``scancel`` on one host.

    Args:
        transport: Runs the commands (its ``env`` should carry ``SLURM_CONF`` if needed).
        partition: Default partition when the job's GPU binding names none.
        default_gres: Default GRES (e.g. ``gpu:1``) when the binding names none.
        extra_sbatch_args: Appended to every ``sbatch`` (site options such as ``--qos``).
        timeout: Seconds for each remote command. Slurm clients retry for ~10-20 s
            before reporting an unreachable controller, so keep this above that.
        kill_grace_s: TERM-to-KILL delay when ``kill`` must signal the wrapper group
            itself (slurm forgot the job); slurm's own ``KillWait`` applies otherwise.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        partition: str | None = None,
        default_gres: str | None = None,
        extra_sbatch_args: Sequence[str] = (),
        timeout: float = 60.0,
        kill_grace_s: float = 10.0,
    ) -> None:
        self._transport = transport
        self._partition = partition
        self._default_gres = default_gres
        self._extra = tuple(extra_sbatch_args)
        self._timeout = timeout
        self._kill_grace = kill_grace_s

    def _run(self, command: str) -> CommandResult:
        return self._transport.run(command, timeout=self._timeout)

    def _unavailable(self, what: str, result: CommandResult) -> SchedulerUnavailableError:
        return unavailable_error(f"{self._transport.host_name}: {what}", result)

    def sbatch_argv(self, spec: JobSpec) -> list[str]:
        """The ``sbatch`` argv for ``spec`` (pure; exposed for tests and logs)."""
        return sbatch_argv(
            spec,
            partition=spec.gpu.slurm_partition or self._partition,
            gres=spec.gpu.slurm_gres or self._default_gres,
            extra=self._extra,
        )

    def submit(self, spec: JobSpec) -> JobRef:
        """Install the wrapper and ``sbatch`` the job, as one remote command.

        Safe to repeat: a second call for the same case directory returns the job the
        first one queued (see
        :func:`~mqi_communicator.remote.schedulers.slurm.commands.submit_script`).

        Raises:
            SubmissionRejectedError: sbatch (or the wrapper install) said no.
            SchedulerUnavailableError: slurmctld did not answer.
            SchedulerOutputError: sbatch succeeded but printed no job id.
            HostUnreachableError: from the transport.
        """
        stdin = require_token(spec)
        script = submit_script(spec, self.sbatch_argv(spec))
        result = self._transport.run(script, timeout=self._timeout, stdin=stdin)
        if result.exit_code != 0:
            if classify_stderr(result.stderr) is SlurmError.UNREACHABLE:
                raise self._unavailable(f"sbatch {spec.label}", result)
            raise SubmissionRejectedError(
                f"{self._transport.host_name}: sbatch {spec.label} failed "
                f"(exit {result.exit_code}): {result.stderr.strip()[-1000:]}",
                exit_code=result.exit_code,
                stderr=result.stderr,
            )
        job_id = parse_sbatch_id(result.stdout)
        _log.info("%s: submitted %s as slurm job %s", self._transport.host_name, spec.label, job_id)
        return JobRef(job_id, spec.label, spec.remote_dir, token=spec.token)

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        """Status of every ref from ONE remote command (squeue + marker probe).

        Raises:
            SchedulerUnavailableError: slurmctld did not answer.
            HostUnreachableError: from the transport.
        """
        if not refs:
            return {}
        # Through stdin when long: a poll of ~1,000 jobs exceeds the 128 KiB argv cap.
        result = run_script(self._transport, poll_command(refs), timeout=self._timeout)
        return poll_statuses(refs, result, where=self._transport.host_name)

    def kill(self, ref: JobRef) -> None:
        """Ask slurm to cancel the job, and end every process with its token on this host.

        ``--name`` makes scancel skip a job whose id now belongs to someone else (ids
        restart after a controller lost its state). A job the controller no longer knows
        is not an error here: the markers will tell the poller what happened. The token
        killer reaches the processes on the host the transport runs on (the login node;
        on a one-node cluster, the node itself); a later poll confirms (``killed``).

        Raises:
            SchedulerUnavailableError: slurmctld did not answer.
            RemoteCommandError: scancel refused for another reason.
        """
        if ref.token is None and not is_job_id(ref.job_id):
            return
        script = kill_script(ref, self._kill_grace)
        stdin = token_stdin(ref.token) if ref.token is not None else None
        result = self._transport.run(script, timeout=self._timeout, stdin=stdin)
        if MARKER_KILL_RECORD in result.stdout:
            _log.warning(
                "%s: slurm does not know job %s (%s); signalled the wrapper group directly",
                self._transport.host_name,
                ref.job_id,
                ref.label,
            )
        kind = classify_stderr(result.stderr)
        if kind is SlurmError.UNREACHABLE:
            raise self._unavailable(f"scancel {ref.job_id}", result)
        if result.exit_code != 0 and kind is not SlurmError.INVALID_JOB_ID:
            raise RemoteCommandError(
                f"{self._transport.host_name}: scancel {ref.job_id} failed "
                f"(exit {result.exit_code}): {result.stderr.strip()[-500:]}",
                exit_code=result.exit_code,
                stderr=result.stderr,
            )

    def find_by_label(self, label: str, remote_dir: str) -> JobRef | None:
        """Recover our job after a crash from squeue, or from the case directory.

        The job id comes from squeue (name == ``label``) or, once the controller has
        forgotten the job, from ``<case>.mqi/slurm_job_id``, which the job wrote when it
        started. The returned ref holds the token found in the marker directory.

        Returns:
            The ref, or None when slurm does not know the label and no wrapper of ours
            ever started in ``remote_dir``.

        Raises:
            SchedulerOutputError: squeue's answer could not be trusted.
            SchedulerUnavailableError: slurmctld did not answer.
        """
        result = self._run(find_command(label, remote_dir))
        host = self._transport.host_name
        answer, trusted = read_answer(result, f"{host}: find {label}")
        return found_job(answer, trusted, label, remote_dir, where=host, raw=result.stdout)
