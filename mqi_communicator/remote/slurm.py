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
from datetime import UTC, datetime

from mqi_communicator.errors import (
    RemoteCommandError,
    SchedulerOutputError,
    SchedulerUnavailableError,
    SubmissionRejectedError,
)
from mqi_communicator.remote.markers import (
    MQI_DIR,
    MarkerInfo,
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
    SqueueAnswer,
    SqueueJob,
    classify_stderr,
    parse_sbatch_id,
    parse_squeue_section,
)

__all__ = ["SlurmScheduler", "decide_status"]

_log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"[0-9]+\Z")
_OUT_RECORD = "@@mqi-slurm-out"
_OUT_ID = re.compile(r"([0-9]+)\.out\Z")
_SQUEUE_BASE = ("squeue", "-h", "-t", "all", "-O", SQUEUE_FORMAT)


def _epoch(marker: MarkerInfo | None) -> datetime | None:
    if marker is None or marker.started is None:
        return None
    return datetime.fromtimestamp(marker.started, UTC)


def _from_markers(ref: JobRef, marker: MarkerInfo, why: str) -> JobStatus:
    """Status from the wrapper's markers alone (the controller does not know the job)."""
    gone = marker.processes_gone
    started = _epoch(marker)
    if marker.label is not None and marker.label != ref.label:
        return JobStatus(
            JobState.UNKNOWN,
            detail=f"{why}; markers carry label {marker.label!r}, not {ref.label!r}",
            processes_gone=gone,
        )
    if marker.exit_code is not None:
        if marker.signal:
            state = JobState.KILLED
        else:
            state = JobState.SUCCEEDED if marker.exit_code == 0 else JobState.FAILED
        sig = f", signal {marker.signal}" if marker.signal else ""
        return JobStatus(
            state,
            exit_code=marker.exit_code,
            detail=f"{why}; wrapper exit marker {marker.exit_code}{sig}",
            log_tail=marker.log_tail,
            started_at=started,
            processes_gone=gone,
        )
    if marker.pgid is not None:
        if marker.group_alive:
            return JobStatus(
                JobState.RUNNING,
                detail=f"{why}; wrapper group alive",
                started_at=started,
                processes_gone=False,
            )
        if marker.group_alive is False:
            # Started, no exit marker, group gone: ended by SIGKILL (the wrapper's contract).
            return JobStatus(
                JobState.KILLED,
                detail=f"{why}; wrapper group gone without an exit marker",
                started_at=started,
                processes_gone=True,
            )
        return JobStatus(JobState.UNKNOWN, detail=f"{why}; group liveness unclear")
    if marker.started is not None:
        return JobStatus(JobState.UNKNOWN, detail=f"{why}; started marker without pgid")
    return JobStatus(JobState.ABSENT, detail=f"{why}; wrapper never started", processes_gone=True)


def decide_status(
    ref: JobRef, job: SqueueJob | None, trusted: bool, marker: MarkerInfo | None
) -> JobStatus:
    """Combine squeue's line for ``ref`` (if any) with the wrapper's markers.

    Args:
        ref: The job asked about.
        job: squeue's line with ``ref.job_id``, or None.
        trusted: Whether squeue's answer was complete (a missing line then means
            "the controller does not know this job").
        marker: The markers of ``ref.remote_dir``, None when the probe gave no record.

    Returns:
        The status; never terminal on missing or unreadable evidence.
    """
    gone = marker.processes_gone if marker is not None else None
    tail = marker.log_tail if marker is not None else ""
    if job is not None and job.name == ref.label:
        detail = f"slurm {job.slurm_state} ({job.reason})"
        # The wrapper's epoch marker, not squeue's naive local time: one timezone-aware clock.
        started = _epoch(marker)
        if job.state in (JobState.QUEUED, JobState.RUNNING):
            return JobStatus(job.state, detail=detail, started_at=started, processes_gone=gone)
        if job.state is JobState.KILLED and gone is not True:
            # scancel is a request: hold on until the wrapper's group has really ended.
            return JobStatus(
                JobState.RUNNING,
                detail=detail + "; waiting for the wrapper's processes to end",
                started_at=started,
                processes_gone=gone,
            )
        if job.state is JobState.UNKNOWN:
            return JobStatus(JobState.UNKNOWN, detail=f"unknown slurm line {job.raw!r}")
        exit_code = job.exit_code
        if exit_code is None and marker is not None:
            exit_code = marker.exit_code
        if exit_code is None and job.signal is not None:
            exit_code = 128 + job.signal
        return JobStatus(
            job.state,
            exit_code=exit_code,
            detail=detail,
            log_tail=tail,
            started_at=started,
            processes_gone=gone,
        )
    why = "not known to slurm" if job is None else f"slurm job {job.job_id} is {job.name!r}"
    if not trusted:
        return JobStatus(JobState.UNKNOWN, detail=f"{why}, but squeue's answer was incomplete")
    if marker is None:
        return JobStatus(JobState.UNKNOWN, detail=f"{why}, and the marker probe gave no record")
    return _from_markers(ref, marker, why)


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
        return SchedulerUnavailableError(
            f"{self._transport.host_name}: {what}: slurm controller unreachable: "
            f"{result.stderr.strip()[-500:]}"
        )

    def sbatch_argv(self, spec: JobSpec) -> list[str]:
        """The ``sbatch`` argv for ``spec`` (pure; exposed for tests and logs)."""
        partition = spec.gpu.slurm_partition or self._partition
        gres = spec.gpu.slurm_gres or self._default_gres
        env = dict(spec.env)
        if not gres and spec.gpu.cuda_devices is not None:
            env.setdefault("CUDA_VISIBLE_DEVICES", spec.gpu.cuda_devices)
        # --wrap, not the wrapper as the batch script: slurm copies a batch script to its
        # spool dir, and the wrapper finds its case directory from its own path.
        wrap = env_prefix(env) + join_argv(wrapper_argv(spec.remote_dir, spec.label, spec.command))
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={spec.label}",
            f"--chdir={spec.remote_dir}",
            # Relative to --chdir, so '%' or '\' in the case directory cannot reach
            # slurm's filename patterns.
            f"--output={MQI_DIR}/slurm-%j.out",
        ]
        if partition:
            argv.append(f"--partition={partition}")
        if gres:
            argv.append(f"--gres={gres}")
        if spec.time_limit_s is not None:
            minutes, seconds = divmod(max(1, spec.time_limit_s), 60)
            argv.append(f"--time={minutes}:{seconds:02d}")
        argv.extend(self._extra)
        argv.append(f"--wrap={wrap}")
        return argv

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

    def _answer(self, result: CommandResult, what: str) -> tuple[SqueueAnswer, bool]:
        """squeue's part of ``result`` and whether to trust a missing line as "unknown id"."""
        answer = parse_squeue_section(result.stdout)
        kind = classify_stderr(result.stderr)
        if kind is SlurmError.UNREACHABLE:
            raise self._unavailable(what, result)
        if answer.exit_code == 0:
            trusted = answer.complete
        else:
            # exit 1 + "Invalid job id specified": the (single) id is unknown -> absent.
            trusted = answer.complete and kind is SlurmError.INVALID_JOB_ID
        if not trusted:
            _log.warning(
                "%s: %s: untrusted squeue answer (exit %s, stderr %r, bad lines %r)",
                self._transport.host_name,
                what,
                answer.exit_code,
                result.stderr[-500:],
                answer.bad_lines[:5],
            )
        return answer, trusted

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
        answer, trusted = self._answer(result, f"poll of {len(refs)} jobs")
        markers = parse_probe(answer.rest)
        return {
            ref: decide_status(
                ref, answer.jobs.get(ref.job_id), trusted, markers.get(ref.remote_dir)
            )
            for ref in refs
        }

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
        forgotten the job, from the ``.mqi/slurm-<id>.out`` file slurm created.

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
        out_glob = quote(f"{remote_dir.rstrip('/')}/{MQI_DIR}/") + "slurm-*.out"
        command = (
            f'{join_argv(argv)}; echo "{SQUEUE_END} $?"; {probe_snippet([remote_dir])}; '
            f'for f in {out_glob}; do [ -e "$f" ] && echo "{_OUT_RECORD} ${{f##*/slurm-}}"; '
            "done; true"
        )
        result = self._run(command)
        answer, trusted = self._answer(result, f"find_by_label {label}")
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
        out_ids = [
            int(m.group(1))
            for line in answer.rest.splitlines()
            if line.startswith(_OUT_RECORD + " ")
            and (m := _OUT_ID.match(line[len(_OUT_RECORD) + 1 :]))
        ]
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
