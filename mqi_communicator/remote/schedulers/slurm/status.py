"""Pure: combine squeue's answer with the wrapper's markers into a :class:`JobStatus`.

Slurm's word counts while the controller remembers the job under our label. Once it has
forgotten it (``MinJobAge``, a controller that lost its state) or the id names another
job, the wrapper's markers decide
(:func:`~mqi_communicator.remote.job.marker_status.status_from_markers`). Either way, whether
the job's processes are gone comes from the markers and the token scan, and only from
markers that carry the attempt's token and our label. Missing or unreadable evidence is
never terminal: a terminal Slurm state whose processes cannot be told gone is UNKNOWN.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from mqi_communicator.errors import SchedulerOutputError, SchedulerUnavailableError
from mqi_communicator.remote.job.markers import (
    MarkerInfo,
    parse_probe,
    probe_key,
    status_from_markers,
    trusted_markers,
)
from mqi_communicator.remote.protocol import CommandResult, JobRef, JobStatus
from mqi_communicator.remote.schedulers.slurm.parse import (
    SlurmError,
    SqueueAnswer,
    SqueueJob,
    classify_stderr,
    parse_id_records,
    parse_squeue_section,
)
from mqi_communicator.statemachine.jobs import JobState

__all__ = ["decide_status", "found_job", "poll_statuses", "read_answer", "unavailable_error"]

_log = logging.getLogger(__name__)


def _epoch(marker: MarkerInfo | None) -> datetime | None:
    if marker is None or marker.started is None:
        return None
    return datetime.fromtimestamp(marker.started, UTC)


def _processes_gone(marker: MarkerInfo | None) -> bool | None:
    """``marker.processes_gone``, plus one case it leaves open.

    The wrapper starts the command only after writing ``pgid`` and ``started``; an exit
    marker without either (a TERM during the wrapper's first lines) means the command
    never ran and the wrapper has exited. (Token markers settle this through the scan.)
    """
    if marker is None:
        return None
    gone = marker.processes_gone
    if gone is None and marker.legacy and marker.exit_code is not None and marker.pgid is None:
        return True if marker.started is None else None
    return gone


def decide_status(
    ref: JobRef, job: SqueueJob | None, trusted: bool, marker: MarkerInfo | None
) -> JobStatus:
    """Combine squeue's line for ``ref`` (if any) with the wrapper's markers.

    Args:
        ref: The job asked about.
        job: squeue's line with ``ref.job_id``, or None.
        trusted: Whether squeue's answer was complete (a missing line then means
            "the controller does not know this job").
        marker: The probe's record for ``ref`` (None: no record). Used only when it
            carries ``ref.token`` and ``ref.label``.

    Returns:
        The status; never terminal on missing or unreadable evidence.
    """
    raw = marker
    marker = trusted_markers(marker, ref.label, ref.token)
    gone = _processes_gone(marker)
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
        if gone is None:
            # Slurm's tracking may miss a descendant that left the job (setsid).
            return JobStatus(
                JobState.UNKNOWN,
                detail=detail + "; could not tell whether the job's processes are gone",
                started_at=started,
            )
        # A job cancelled while pending reports wait status 0: not an exit code.
        exit_code = None if job.state is JobState.KILLED else job.exit_code
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
    status = status_from_markers(raw, ref.label, ref.token)
    return replace(status, detail=f"{why}; markers: {status.detail or status.state.value}")


def unavailable_error(what: str, result: CommandResult) -> SchedulerUnavailableError:
    """The error for "slurmctld did not answer", with the client's message."""
    return SchedulerUnavailableError(
        f"{what}: slurm controller unreachable: {result.stderr.strip()[-500:]}"
    )


def read_answer(result: CommandResult, what: str) -> tuple[SqueueAnswer, bool]:
    """squeue's part of a command's output, and whether a missing job means "unknown id".

    Raises:
        SchedulerUnavailableError: the client could not reach slurmctld.
    """
    answer = parse_squeue_section(result.stdout)
    kind = classify_stderr(result.stderr)
    if kind is SlurmError.UNREACHABLE:
        raise unavailable_error(what, result)
    if answer.exit_code == 0:
        trusted = answer.complete
    else:
        # exit 1 + "Invalid job id specified": the (single) id is unknown -> absent.
        trusted = answer.complete and kind is SlurmError.INVALID_JOB_ID
    if not trusted:
        _log.warning(
            "%s: untrusted squeue answer (exit %s, stderr %r, bad lines %r)",
            what,
            answer.exit_code,
            result.stderr[-500:],
            answer.bad_lines[:5],
        )
    return answer, trusted


def poll_statuses(
    refs: Sequence[JobRef], result: CommandResult, *, where: str = "slurm"
) -> dict[JobRef, JobStatus]:
    """The status of every ref from one poll command's result (squeue + marker probe).

    Raises:
        SchedulerUnavailableError: the client could not reach slurmctld.
    """
    answer, trusted = read_answer(result, f"{where}: poll of {len(refs)} jobs")
    try:
        markers = parse_probe(answer.rest)
    except ValueError:  # garbage the marker parser chokes on: no marker evidence at all
        _log.warning("%s: unparseable marker probe output: %r", where, answer.rest[-2000:])
        markers = {}
    statuses = {}
    for ref in refs:
        marker = markers.get(probe_key(ref.remote_dir, ref.token))
        statuses[ref] = decide_status(ref, answer.jobs.get(ref.job_id), trusted, marker)
    return statuses


def found_job(
    answer: SqueueAnswer, trusted: bool, label: str, remote_dir: str, *, where: str, raw: str
) -> JobRef | None:
    """The job a find command's answer names for ``label`` in ``remote_dir``, or None.

    squeue's job with our name (one that may still run, then the newest) wins; else the
    id the job wrote into its marker directory; else, when our wrapper started but the
    id is lost, a ref with an empty id (poll then relies on the markers alone). The ref
    holds the token found in the marker directory.

    Raises:
        SchedulerOutputError: squeue's answer was incomplete, or the probe printed no
            marker record for ``remote_dir`` (``raw`` is the output, for the message).
    """
    if not trusted:
        raise SchedulerOutputError(
            f"{where}: squeue answer for {label!r} incomplete: {raw[-500:]!r}"
        )
    ours = [j for j in answer.jobs.values() if j.name == label]
    if ours:
        # Prefer a job that may still run, then the newest.
        live = [j for j in ours if j.state in (JobState.QUEUED, JobState.RUNNING)]
        best = max(live or ours, key=lambda j: int(j.job_id))
        return JobRef(best.job_id, label, remote_dir, token=_token_of(answer.rest, remote_dir))
    out_ids = parse_id_records(answer.rest)
    try:
        marker = parse_probe(answer.rest).get(remote_dir)
    except ValueError:  # the marker parser choked on garbage: no evidence
        marker = None
    if marker is None:
        raise SchedulerOutputError(f"{where}: no marker record for {remote_dir!r}: {raw[-500:]!r}")
    started = marker.wrapper_started
    if marker.label not in (None, label):
        started = False
        out_ids = []
    if out_ids:
        return JobRef(str(max(out_ids)), label, remote_dir, token=marker.token)
    if started:
        # Ran, but the id is lost: an empty id makes poll rely on the markers alone.
        return JobRef("", label, remote_dir, token=marker.token)
    return None


def _token_of(probe_output: str, remote_dir: str) -> str | None:
    """The token the marker directory of ``remote_dir`` holds, per the probe's output."""
    try:
        marker = parse_probe(probe_output).get(remote_dir)
    except ValueError:
        return None
    return marker.token if marker is not None else None
