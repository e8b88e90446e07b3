"""A scheduler without a queue: the wrapper runs as a detached process group.

For a GPU server that runs the communicator itself (with ``LocalTransport``), or any
host reached by a transport when no Pueue/Slurm is installed. Every operation is one
shell command through ``transport.run``, so it works over SSH as well.

* The job id is the wrapper's process group id (``setsid`` makes the wrapper a group
  and session leader, so the group survives a restart of the communicator).
* Status comes only from the markers (:mod:`mqi_communicator.remote.markers`).
  A directory with neither a ``pgid`` nor an ``exit`` marker is ABSENT: ``submit``
  returns only once the wrapper wrote its pgid, so "queued" does not exist here.
* ``kill`` starts a tiny detached killer (TERM to the group, SIGKILL after a grace
  period) and returns at once. Only a later poll that sees the group gone confirms it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mqi_communicator.errors import RemoteCommandError, SchedulerOutputError
from mqi_communicator.remote.markers import (
    MQI_DIR,
    install_snippet,
    parse_probe,
    probe_snippet,
    run_script,
    status_from_markers,
    wrapper_argv,
)
from mqi_communicator.remote.protocol import (
    JobRef,
    JobSpec,
    JobState,
    JobStatus,
    Transport,
)
from mqi_communicator.remote.quoting import join_argv, quote

__all__ = ["LocalScheduler", "group_kill_script", "job_command", "signal_wrapper_group"]

_log = logging.getLogger(__name__)


def job_command(spec: JobSpec) -> list[str]:
    """``spec.command`` prefixed with ``env`` for ``spec.env`` and the GPU's CUDA devices."""
    env = dict(spec.env)
    if spec.gpu.cuda_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.gpu.cuda_devices
    if not env:
        return list(spec.command)
    return ["env", *(f"{k}={v}" for k, v in env.items()), *spec.command]


def group_kill_script(remote_dir: str, pgid: int, grace_s: float) -> str:
    """Shell text: TERM the wrapper's group now, SIGKILL it ``grace_s`` later, detached.

    Exits 3 (signalling nothing) unless ``remote_dir``'s pgid marker names ``pgid``, so
    a group id reused by a stranger is never signalled on a guess.
    """
    if pgid <= 1:
        raise ValueError(f"not a process group id: {pgid}")
    mqi = quote(f"{remote_dir.rstrip('/')}/{MQI_DIR}")
    killer = f"kill -TERM -{pgid} 2>/dev/null; sleep {grace_s:g}; kill -KILL -{pgid} 2>/dev/null"
    return (
        f"_p=; [ -f {mqi}/pgid ] && read -r _p <{mqi}/pgid\n"
        f'[ "$_p" = {pgid} ] || {{ echo "pgid marker is \'$_p\'" >&2; exit 3; }}\n'
        f"setsid sh -c {quote(killer)} </dev/null >/dev/null 2>&1 &\n"
    )


def signal_wrapper_group(
    transport: Transport, ref: JobRef, pgid: int, grace_s: float, timeout: float
) -> None:
    """Run :func:`group_kill_script` for ``ref``'s wrapper group on ``transport``.

    Raises:
        RemoteCommandError: the pgid marker does not name ``pgid`` (nothing signalled)
            or the command failed.
    """
    result = transport.run(group_kill_script(ref.remote_dir, pgid, grace_s), timeout=timeout)
    if result.exit_code != 0:
        raise RemoteCommandError(
            f"{transport.host_name}: could not signal the wrapper group {pgid} of job "
            f"{ref.label!r}: {result.stderr.strip()}",
            exit_code=result.exit_code,
            stderr=result.stderr,
        )


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
            RemoteCommandError: the wrapper could not be installed or did not start.
            HostUnreachableError: the host could not be asked.
        """
        mqi = quote(f"{spec.remote_dir.rstrip('/')}/{MQI_DIR}")
        argv = wrapper_argv(spec.remote_dir, spec.label, job_command(spec))
        tries = max(1, int(self._start_wait / 0.05))
        script = (
            # Idempotent: a pgid marker means a wrapper already started here.
            f"if [ -s {mqi}/pgid ]; then cat {mqi}/pgid; exit 0; fi\n"
            f"{install_snippet(spec.remote_dir, spec.label)} || exit 3\n"
            f"setsid {join_argv(argv)} </dev/null >/dev/null 2>&1 &\n"
            f"_i=0; while [ ! -s {mqi}/pgid ] && [ $_i -lt {tries} ]; do"
            " sleep 0.05; _i=$((_i+1)); done\n"
            f"[ -s {mqi}/pgid ] && cat {mqi}/pgid || exit 4\n"
        )
        result = self._transport.run(script, timeout=self._timeout + self._start_wait)
        pgid = result.stdout.strip()
        if result.exit_code != 0 or not pgid.isdigit():
            raise RemoteCommandError(
                f"{self._transport.host_name}: could not start job {spec.label!r} in "
                f"{spec.remote_dir!r} (exit {result.exit_code}): {result.stderr.strip()}",
                exit_code=result.exit_code,
                stderr=result.stderr,
            )
        return JobRef(job_id=pgid, label=spec.label, remote_dir=spec.remote_dir)

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        """One probe for all ``refs``; see the module docstring for the mapping."""
        if not refs:
            return {}
        dirs = list(dict.fromkeys(ref.remote_dir for ref in refs))
        result = run_script(self._transport, probe_snippet(dirs), timeout=self._timeout)
        infos = parse_probe(result.stdout)
        statuses: dict[JobRef, JobStatus] = {}
        for ref in refs:
            info = infos.get(ref.remote_dir)
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
                    processes_gone=info.processes_gone,
                )
                continue
            statuses[ref] = status_from_markers(info, ref.label)
        return statuses

    def kill(self, ref: JobRef) -> None:
        """Send TERM to the job's group now and SIGKILL after the grace period.

        Returns at once; a later poll confirms the group is gone. Refuses (raises
        ``RemoteCommandError``) when the directory's pgid marker does not name this job,
        so a pgid reused by a stranger is never signalled on a guess.
        """
        if not ref.job_id.isdigit():
            raise ValueError(f"not a process group id: {ref.job_id!r}")
        signal_wrapper_group(self._transport, ref, int(ref.job_id), self._grace, self._timeout)

    def find_by_label(self, label: str, remote_dir: str) -> JobRef | None:
        """The job whose markers in ``remote_dir`` carry ``label``, or None.

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
        return JobRef(job_id=str(info.pgid), label=label, remote_dir=remote_dir)
