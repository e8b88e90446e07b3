"""A scheduler without a queue: the wrapper runs as a detached process group.

For a GPU server that runs the communicator itself (with ``LocalTransport``), or any
host reached by a transport when no Pueue/Slurm is installed. Every operation is one
shell command through ``transport.run``, so it works over SSH as well.

* The job id is the wrapper's process group id (``setsid`` makes the wrapper a group
  and session leader, so the group survives a restart of the communicator).
* Status comes only from the markers and the token scan
  (:mod:`~mqi_communicator.remote.job.marker_status`). A marker directory without a
  ``pgid`` or ``exit`` marker and no process with the token is ABSENT: ``submit``
  returns only once the wrapper wrote its pgid, so "queued" does not exist here.
* ``kill`` starts a tiny detached killer (TERM to every process carrying the token and
  their groups, SIGKILL after a grace period; :mod:`~mqi_communicator.remote.job.process_kill`)
  and returns at once. Only a later poll that sees nothing of the job alive confirms it.
"""

from __future__ import annotations

from collections.abc import Sequence

from mqi_communicator.errors import RemoteCommandError
from mqi_communicator.remote.job.markers import (
    poll_script,
    probe_snippet,
    require_token,
    run_script,
)
from mqi_communicator.remote.job.process_kill import kill_job
from mqi_communicator.remote.protocol import JobRef, JobSpec, JobStatus, Transport
from mqi_communicator.remote.schedulers.local.commands import start_script
from mqi_communicator.remote.schedulers.local.status import found_job, poll_statuses

__all__ = ["LocalScheduler"]


class LocalScheduler:
    """Runs each job as a detached process group on the transport's host.

    Args:
        transport: Where the jobs run.
        timeout: Seconds allowed for each remote command.
        kill_grace_s: Seconds between SIGTERM and SIGKILL when killing.
        start_wait_s: How long ``submit`` waits for the wrapper's pgid marker.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        timeout: float = 60.0,
        kill_grace_s: float = 10.0,
        start_wait_s: float = 10.0,
    ) -> None:
        self._transport = transport
        self._timeout = timeout
        self._grace = kill_grace_s
        self._start_wait = start_wait_s

    def submit(self, spec: JobSpec) -> JobRef:
        """Start the job; repeating it for a directory that already has a job returns that job.

        Raises:
            SubmissionRejectedError: the spec has no attempt token.
            RemoteCommandError: the wrapper could not be installed or did not start.
            HostUnreachableError: the host could not be asked.
        """
        stdin = require_token(spec)
        script = start_script(spec, self._start_wait)
        result = self._transport.run(script, timeout=self._timeout + self._start_wait, stdin=stdin)
        pgid = result.stdout.strip()
        if result.exit_code != 0 or not pgid.isdigit():
            raise RemoteCommandError(
                f"{self._transport.host_name}: could not start job {spec.label!r} in "
                f"{spec.remote_dir!r} (exit {result.exit_code}): {result.stderr.strip()}",
                exit_code=result.exit_code,
                stderr=result.stderr,
            )
        return JobRef(pgid, spec.label, spec.remote_dir, token=spec.token)

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        """One probe for all ``refs``; see the module docstring for the mapping."""
        if not refs:
            return {}
        result = run_script(self._transport, poll_script(refs), timeout=self._timeout)
        host = self._transport.host_name
        return poll_statuses(refs, result.stdout, result.stderr, where=host)

    def kill(self, ref: JobRef) -> None:
        """TERM every process of the job now and SIGKILL what is left after the grace.

        Returns at once; a later poll confirms. Refuses (raises ``RemoteCommandError``)
        when the marker directory does not hold the job's token or its pgid marker does
        not name this job, so nothing is ever signalled on a guess.
        """
        if not ref.job_id.isdigit():
            raise ValueError(f"not a process group id: {ref.job_id!r}")
        kill_job(
            self._transport, ref, grace_s=self._grace, timeout=self._timeout, pgid=int(ref.job_id)
        )

    def find_by_label(self, label: str, remote_dir: str) -> JobRef | None:
        """The job whose markers for ``remote_dir`` carry ``label``, or None.

        The returned ref holds the token found in the marker directory.

        Raises:
            SchedulerOutputError: the probe output could not be read.
        """
        result = self._transport.run(probe_snippet([remote_dir]), timeout=self._timeout)
        host = self._transport.host_name
        return found_job(result.stdout, result.stderr, label, remote_dir, where=host)
