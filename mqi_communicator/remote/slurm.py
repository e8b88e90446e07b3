"""The Slurm scheduler adapter: build a command, run it once, parse the answer.

Every job runs under the marker wrapper (:mod:`mqi_communicator.remote.markers`). Slurm's
word is used while the controller remembers the job; once it has forgotten (``MinJobAge``,
a controller restart that lost its state, an id reused by another job) the wrapper's
markers decide. Each public call is ONE remote command, whatever the number of jobs.

Client calls need ``SLURM_CONF`` when the config is not in ``/etc/slurm``: give it to the
transport's ``env``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from mqi_communicator.errors import (
    RemoteCommandError,
    SchedulerOutputError,
    SchedulerUnavailableError,
    SubmissionRejectedError,
)
from mqi_communicator.remote.markers import (
    MQI_DIR,
    install_snippet,
    parse_probe,
    probe_snippet,
    wrapper_argv,
)
from mqi_communicator.remote.protocol import (
    CommandResult,
    JobRef,
    JobSpec,
    JobState,
    JobStatus,
    Transport,
)
from mqi_communicator.remote.quoting import env_prefix, join_argv, quote
from mqi_communicator.remote.slurm_parse import (
    SQUEUE_END,
    SQUEUE_FORMAT,
    SlurmError,
    classify_stderr,
    parse_sbatch_id,
)
from mqi_communicator.remote.slurm_status import poll_statuses, read_answer, unavailable_error

__all__ = ["JOB_ID_FILE", "SlurmScheduler"]

_log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"[0-9]+\Z")
_ID_RECORD = "@@mqi-slurm-id"
#: Written by the job itself (``$SLURM_JOB_ID``) into ``<case>/.mqi/`` when it starts.
JOB_ID_FILE = "slurm_job_id"
_SQUEUE_BASE = ("squeue", "-h", "-t", "all", "-O", SQUEUE_FORMAT)


def _output_path(remote_dir: str) -> str:
    """slurm's --output for a case directory, safe from slurm's filename patterns.

    slurmstepd prefixes a relative path with the work dir and THEN expands ``%`` patterns
    in the whole string, and any backslash disables patterns and is deleted. So: relative
    for plain directories, absolute with ``%%`` when the directory holds ``%``, and
    /dev/null when it holds a backslash (the wrapper keeps its own log in job.log).
    """
    if "\\" in remote_dir:
        return "/dev/null"
    if "%" in remote_dir:
        return f"{remote_dir.rstrip('/').replace('%', '%%')}/{MQI_DIR}/slurm-%j.out"
    return f"{MQI_DIR}/slurm-%j.out"


def _minutes(seconds: int) -> str:
    """``--time`` as ``M:SS`` (slurm enforces whole minutes, rounding up)."""
    minutes, secs = divmod(max(1, seconds), 60)
    return f"{minutes}:{secs:02d}"


class SlurmScheduler:
    """Submits, polls and kills jobs through ``sbatch``/``squeue``/``scancel`` on one host.

    Args:
        transport: Runs the commands (its ``env`` should carry ``SLURM_CONF`` if needed).
        partition: Default partition when the job's GPU binding names none.
        default_gres: Default GRES (e.g. ``gpu:1``) when the binding names none.
        extra_sbatch_args: Appended to every ``sbatch`` (site options such as ``--qos``).
        timeout: Seconds for each remote command. Slurm clients retry for ~10-20 s
            before reporting an unreachable controller, so keep this above that.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        partition: str | None = None,
        default_gres: str | None = None,
        extra_sbatch_args: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> None:
        self._transport = transport
        self._partition = partition
        self._default_gres = default_gres
        self._extra = tuple(extra_sbatch_args)
        self._timeout = timeout

    def _run(self, command: str) -> CommandResult:
        return self._transport.run(command, timeout=self._timeout)

    def _unavailable(self, what: str, result: CommandResult) -> SchedulerUnavailableError:
        return unavailable_error(f"{self._transport.host_name}: {what}", result)

    def sbatch_argv(self, spec: JobSpec) -> list[str]:
        """The ``sbatch`` argv for ``spec`` (pure; exposed for tests and logs)."""
        partition = spec.gpu.slurm_partition or self._partition
        gres = spec.gpu.slurm_gres or self._default_gres
        env = dict(spec.env)
        if not gres and spec.gpu.cuda_devices is not None:
            env.setdefault("CUDA_VISIBLE_DEVICES", spec.gpu.cuda_devices)
        # --wrap, not the wrapper as the batch script: slurm copies a batch script to its
        # spool dir, and the wrapper finds its case directory from its own path. The job
        # id is recorded first (relative to --chdir) so find_by_label can recover it
        # after the controller has forgotten the job.
        wrap = (
            f'echo "$SLURM_JOB_ID" >{MQI_DIR}/{JOB_ID_FILE}; exec '
            + env_prefix(env)
            + join_argv(wrapper_argv(spec.remote_dir, spec.label, spec.command))
        )
        return [
            "sbatch",
            "--parsable",
            f"--job-name={spec.label}",
            f"--chdir={spec.remote_dir}",
            f"--output={_output_path(spec.remote_dir)}",
            *([f"--partition={partition}"] if partition else []),
            *([f"--gres={gres}"] if gres else []),
            *([f"--time={_minutes(spec.time_limit_s)}"] if spec.time_limit_s is not None else []),
            *self._extra,
            f"--wrap={wrap}",
        ]

    def submit(self, spec: JobSpec) -> JobRef:
        """Install the wrapper and ``sbatch`` the job, as one remote command.

        Raises:
            SubmissionRejectedError: sbatch (or the wrapper install) said no.
            SchedulerUnavailableError: slurmctld did not answer.
            SchedulerOutputError: sbatch succeeded but printed no job id.
            HostUnreachableError: from the transport.
        """
        command = (
            install_snippet(spec.remote_dir, spec.label)
            + " && "
            + join_argv(self.sbatch_argv(spec))
        )
        result = self._run(command)
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
        return JobRef(job_id=job_id, label=spec.label, remote_dir=spec.remote_dir)

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        """Status of every ref from ONE remote command (squeue + marker probe).

        Raises:
            SchedulerUnavailableError: slurmctld did not answer.
            HostUnreachableError: from the transport.
        """
        if not refs:
            return {}
        ids = sorted({r.job_id for r in refs if _JOB_ID.match(r.job_id)}, key=int)
        dirs = list(dict.fromkeys(r.remote_dir for r in refs))
        # With no id slurm could know, the markers alone decide.
        squeue = join_argv([*_SQUEUE_BASE, "-j", ",".join(ids)]) if ids else "true"
        command = f'{squeue}; echo "{SQUEUE_END} $?"; {probe_snippet(dirs)}'
        result = self._run(command)
        return poll_statuses(refs, result, where=self._transport.host_name)

    def kill(self, ref: JobRef) -> None:
        """Ask slurm to cancel the job; a later poll confirms (``killed``).

        ``--name`` makes scancel skip a job whose id now belongs to someone else (ids
        restart after a controller lost its state). A job the controller no longer knows
        is not an error here: the markers will tell the poller what happened.

        Raises:
            SchedulerUnavailableError: slurmctld did not answer.
            RemoteCommandError: scancel refused for another reason.
        """
        if not _JOB_ID.match(ref.job_id):
            return
        argv = ["scancel"]
        if "," not in ref.label:  # --name takes a comma-separated list
            argv.append(f"--name={ref.label}")
        argv.append(ref.job_id)
        result = self._run(join_argv(argv))
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
        forgotten the job, from ``.mqi/slurm_job_id``, which the job wrote when it started.

        Returns:
            The ref, or None when slurm does not know the label and no wrapper of ours
            ever started in ``remote_dir``.

        Raises:
            SchedulerOutputError: squeue's answer could not be trusted.
            SchedulerUnavailableError: slurmctld did not answer.
        """
        argv = list(_SQUEUE_BASE)
        if "," not in label:
            argv += ["-n", label]
        id_file = quote(f"{remote_dir.rstrip('/')}/{MQI_DIR}/{JOB_ID_FILE}")
        command = (
            f'{join_argv(argv)}; echo "{SQUEUE_END} $?"; {probe_snippet([remote_dir])}; '
            f'[ -f {id_file} ] && IFS= read -r v <{id_file} && echo "{_ID_RECORD} $v"; true'
        )
        result = self._run(command)
        answer, trusted = read_answer(result, f"{self._transport.host_name}: find {label}")
        if not trusted:
            raise SchedulerOutputError(
                f"{self._transport.host_name}: squeue answer for {label!r} incomplete: "
                f"{result.stdout[-500:]!r}"
            )
        ours = [j for j in answer.jobs.values() if j.name == label]
        if ours:
            # Prefer a job that may still run, then the newest.
            live = [j for j in ours if j.state in (JobState.QUEUED, JobState.RUNNING)]
            best = max(live or ours, key=lambda j: int(j.job_id))
            return JobRef(job_id=best.job_id, label=label, remote_dir=remote_dir)
        ids = [
            line.split(" ", 1)[1].strip()
            for line in answer.rest.splitlines()
            if line.startswith(_ID_RECORD + " ")
        ]
        out_ids = [int(i) for i in ids if _JOB_ID.match(i)]
        marker = parse_probe(answer.rest).get(remote_dir)
        if marker is None:
            raise SchedulerOutputError(
                f"{self._transport.host_name}: no marker record for {remote_dir!r}: "
                f"{result.stdout[-500:]!r}"
            )
        started = marker.pgid is not None or marker.started is not None
        if marker.label not in (None, label):
            started = False
            out_ids = []
        if out_ids:
            return JobRef(job_id=str(max(out_ids)), label=label, remote_dir=remote_dir)
        if started:
            # Ran, but the id is lost: an empty id makes poll rely on the markers alone.
            return JobRef(job_id="", label=label, remote_dir=remote_dir)
        return None
