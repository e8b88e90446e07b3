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

import logging
from collections.abc import Sequence

from mqi_communicator.errors import RemoteCommandError, SchedulerOutputError
from mqi_communicator.remote.job.markers import (
    READ_TOKEN,
    install_snippet,
    marker_dir,
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
from mqi_communicator.remote.transport.quoting import join_argv, quote
from mqi_communicator.statemachine.jobs import JobState

__all__ = ["LocalScheduler", "job_command"]

_log = logging.getLogger(__name__)


def job_command(spec: JobSpec) -> list[str]:
    """``spec.command`` prefixed with ``env`` for ``spec.env`` and the GPU's CUDA devices."""
    env = dict(spec.env)
    if spec.gpu.cuda_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.gpu.cuda_devices
    if not env:
        return list(spec.command)
    return ["env", *(f"{k}={v}" for k, v in env.items()), *spec.command]


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
        mqi = quote(marker_dir(spec.remote_dir))
        argv = wrapper_argv(spec.remote_dir, spec.label, job_command(spec))
        tries = max(1, int(self._start_wait / 0.05))
        script = (
            READ_TOKEN
            # The install refuses a marker directory of another attempt (other token).
            + f"{install_snippet(spec.remote_dir, spec.label)} || exit 3\n"
            # Idempotent: a pgid marker means our wrapper already started here.
            f"if [ -s {mqi}/pgid ]; then cat {mqi}/pgid; exit 0; fi\n"
            f"setsid {join_argv(argv)} </dev/null >/dev/null 2>&1 &\n"
            f"_i=0; while [ ! -s {mqi}/pgid ] && [ $_i -lt {tries} ]; do"
            " sleep 0.05; _i=$((_i+1)); done\n"
            f"[ -s {mqi}/pgid ] && cat {mqi}/pgid || exit 4\n"
        )
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
        infos = parse_probe(result.stdout)
        statuses: dict[JobRef, JobStatus] = {}
        for ref in refs:
            info = infos.get(probe_key(ref.remote_dir, ref.token))
            if info is None:
                _log.warning(
                    "%s: no marker record for %s; raw probe output: %r (stderr %r)",
                    self._transport.host_name,
                    ref.remote_dir,
                    result.stdout[-2000:],
                    result.stderr[-2000:],
                )
            elif info.pgid is not None and str(info.pgid) != ref.job_id:
                statuses[ref] = JobStatus(
                    JobState.UNKNOWN,
                    detail=f"pgid marker {info.pgid} does not match job id {ref.job_id}",
                    processes_gone=False if info.processes_gone is False else None,
                )
                continue
            statuses[ref] = status_from_markers(info, ref.label, ref.token)
        return statuses

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
        info = parse_probe(result.stdout).get(remote_dir)
        if info is None:
            raise SchedulerOutputError(
                f"{self._transport.host_name}: unreadable marker probe for {remote_dir!r}: "
                f"{result.stdout[-500:]!r} {result.stderr[-500:]!r}"
            )
        if info.label != label or info.pgid is None:
            return None
        return JobRef(str(info.pgid), label, remote_dir, token=info.token)
