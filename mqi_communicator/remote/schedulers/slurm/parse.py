"""Pure parsing of Slurm's command-line output (squeue, sbatch); no I/O here.

The squeue format is ``-O`` (``--Format``) with ``|`` after every field and the job name
LAST, so a name may contain anything but a newline (we split at the first five ``|``).
``exit_code`` is the raw wait status (``768`` = exit 3, ``15`` = SIGTERM); it exists in
``-O`` but not in the older ``-o`` letters. Captured outputs from slurm-wlm 22.05 are in
``tests/remote/schedulers/data/slurm_*.txt``.

Facts this module encodes (see ``/work/shared/recipes/slurm-loopback.md``):

* ``squeue -t all`` is needed to see finished jobs; the default filter hides them.
* A finished job ages out after ``MinJobAge``. ``squeue -j ONE_UNKNOWN_ID`` then exits 1 with
  "Invalid job id specified", but ``squeue -j A,B`` with all ids unknown exits 0 and prints
  nothing. Both mean "the controller does not know these jobs" (absent), never "done".
* Any line we cannot read makes the whole answer untrustworthy: jobs missing from such
  an answer are ``unknown``, not absent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from mqi_communicator.errors import SchedulerOutputError
from mqi_communicator.statemachine.jobs import JobState

__all__ = [
    "ID_RECORD",
    "SQUEUE_END",
    "SQUEUE_FORMAT",
    "STATE_MAP",
    "SlurmError",
    "SqueueAnswer",
    "SqueueJob",
    "classify_stderr",
    "decode_wait_status",
    "is_job_id",
    "map_state",
    "parse_id_records",
    "parse_sbatch_id",
    "parse_squeue",
    "parse_squeue_section",
]

_log = logging.getLogger(__name__)

#: ``squeue -O`` value: job id, state, reason, raw wait status, start time, name (last).
SQUEUE_FORMAT = "JobID:|,State:|,Reason:|,exit_code:|,StartTime:|,Name:|"
_FIELDS = 6

#: Printed by our poll command after squeue, with squeue's exit code: ``@@mqi-squeue-end 0``.
#: Its absence means the output was cut off.
SQUEUE_END = "@@mqi-squeue-end"

#: Printed by our find command from the id the job wrote: ``@@mqi-slurm-id <id>``.
ID_RECORD = "@@mqi-slurm-id"

#: Slurm job state -> our state. Every state in which processes of the job may exist
#: maps to running (alive), so the GPU stays held; unknown names map to ``unknown``.
STATE_MAP: Mapping[str, JobState] = {
    "PENDING": JobState.QUEUED,
    "CONFIGURING": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    # Requeue and preemption: the old processes may still be winding down, so hold the GPU.
    "PREEMPTED": JobState.RUNNING,
    "REQUEUED": JobState.RUNNING,
    "REQUEUE_HOLD": JobState.RUNNING,
    "REQUEUE_FED": JobState.RUNNING,
    "SPECIAL_EXIT": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "CANCELLED": JobState.KILLED,
}

_JOB_ID = re.compile(r"[0-9]+\Z")
# ASCII digits only: str.isdigit() accepts "²", which int() refuses.
_DIGITS = _JOB_ID
_SBATCH_ID = re.compile(r"([0-9]+)(?:;[^\s;]+)?\Z")


class SlurmError(StrEnum):
    """What a Slurm client's stderr says went wrong."""

    NONE = "none"
    #: The controller does not know the job(s) (aged out, or never existed).
    INVALID_JOB_ID = "invalid_job_id"
    #: slurmctld did not answer (down, wrong port, munge trouble).
    UNREACHABLE = "unreachable"
    OTHER = "other"


@dataclass(frozen=True)
class SqueueJob:
    """One line of our squeue format.

    Attributes:
        job_id: Slurm's job id.
        name: The job name (``%j``); ours is the case label.
        slurm_state: Slurm's state name as printed (e.g. ``TIMEOUT``).
        state: ``slurm_state`` mapped through :data:`STATE_MAP`.
        reason: Slurm's reason field (``None``, ``TimeLimit``, ``JobHeldUser`` ...).
        exit_code: The exit status when the job exited normally, else None.
        signal: The signal number when the job was killed by one, else None.
        started_at: The start time, None while pending (``N/A``).
        raw: The line as printed, for logs.
    """

    job_id: str
    name: str
    slurm_state: str
    state: JobState
    reason: str
    exit_code: int | None
    signal: int | None
    started_at: datetime | None
    raw: str = ""


@dataclass(frozen=True)
class SqueueAnswer:
    """squeue's answer inside a poll command's output.

    Attributes:
        jobs: Parsed jobs by id.
        exit_code: squeue's exit code, None when the end marker is missing (cut off).
        bad_lines: Lines that did not parse.
        rest: The output after the end marker (the marker probe's part).
    """

    jobs: dict[str, SqueueJob]
    exit_code: int | None
    bad_lines: list[str] = field(default_factory=list)
    rest: str = ""

    @property
    def complete(self) -> bool:
        """True when every line parsed and the end marker was seen."""
        return self.exit_code is not None and not self.bad_lines


def is_job_id(text: str) -> bool:
    """True for a plain Slurm job id (digits)."""
    return _JOB_ID.match(text) is not None


def map_state(slurm_state: str, *, raw: str = "") -> JobState:
    """Map a Slurm state name; unknown names give ``unknown`` and a warning with ``raw``."""
    # squeue may append flags, e.g. "CANCELLED by 0" in some versions: keep the first word.
    name = slurm_state.split(" ", 1)[0].strip().upper()
    state = STATE_MAP.get(name)
    if state is None:
        _log.warning("unknown Slurm job state %r in %r", slurm_state, raw or slurm_state)
        return JobState.UNKNOWN
    return state


def decode_wait_status(raw: str) -> tuple[int | None, int | None]:
    """Decode squeue's ``exit_code`` (a wait status) into ``(exit_code, signal)``.

    Returns ``(None, None)`` when ``raw`` is not a non-negative integer.
    """
    raw = raw.strip()
    if not _DIGITS.match(raw):
        return None, None
    status = int(raw)
    sig = status & 0x7F
    if sig:
        return None, sig
    return (status >> 8) & 0xFF, None


def _parse_time(raw: str) -> datetime | None:
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None  # "N/A" while pending, "Unknown" in some states


def _parse_line(line: str) -> SqueueJob | None:
    body = line[:-1] if line.endswith("|") else line
    parts = body.split("|", _FIELDS - 1)
    if len(parts) != _FIELDS or not line.endswith("|"):
        return None  # truncated line: the name field's terminator is missing
    job_id, slurm_state, reason, status, start = (p.strip() for p in parts[:-1])
    name = parts[-1]  # not stripped: compared verbatim with our label
    if not _JOB_ID.match(job_id) or not slurm_state or not name:
        return None
    exit_code, sig = decode_wait_status(status)
    return SqueueJob(
        job_id=job_id,
        name=name,
        slurm_state=slurm_state,
        state=map_state(slurm_state, raw=line),
        reason=reason,
        exit_code=exit_code,
        signal=sig,
        started_at=_parse_time(start),
        raw=line,
    )


def parse_squeue(text: str) -> tuple[dict[str, SqueueJob], list[str]]:
    """Parse ``squeue -h -O SQUEUE_FORMAT`` output.

    Returns:
        ``(jobs by id, lines that did not parse)``. Blank lines are ignored. When an id
        appears twice (it should not) the later line wins.
    """
    jobs: dict[str, SqueueJob] = {}
    bad: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job = _parse_line(line)
        if job is None:
            bad.append(line)
        else:
            jobs[job.job_id] = job
    if bad:
        _log.warning("unparseable squeue lines: %r", bad[:5])
    return jobs, bad


def parse_squeue_section(text: str) -> SqueueAnswer:
    """Split a poll command's stdout at :data:`SQUEUE_END` and parse the squeue part.

    The command prints squeue's lines, then ``@@mqi-squeue-end <rc>``, then whatever
    follows (the marker probe). Without the end marker the answer is incomplete
    (``exit_code`` None) and everything before is still parsed but not trusted.
    """
    head, sep, tail = text.partition(SQUEUE_END)
    if not sep:
        jobs, bad = parse_squeue(text)
        return SqueueAnswer(jobs=jobs, exit_code=None, bad_lines=bad, rest=text)
    rc_text, _, rest = tail.partition("\n")
    rc_text = rc_text.strip()
    exit_code = int(rc_text) if _DIGITS.match(rc_text) else None
    jobs, bad = parse_squeue(head)
    return SqueueAnswer(jobs=jobs, exit_code=exit_code, bad_lines=bad, rest=rest)


def classify_stderr(stderr: str) -> SlurmError:
    """Classify a Slurm client's stderr (squeue, sbatch, scancel)."""
    text = stderr.lower()
    if "unable to contact slurm controller" in text or "slurm_persist_conn_open" in text:
        return SlurmError.UNREACHABLE
    if "invalid job id specified" in text:
        return SlurmError.INVALID_JOB_ID
    if text.strip():
        return SlurmError.OTHER
    return SlurmError.NONE


def parse_sbatch_id(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` output (``id`` or ``id;cluster``).

    Raises:
        SchedulerOutputError: the last non-empty line is not of that form.
    """
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    match = _SBATCH_ID.match(lines[-1]) if lines else None
    if match is None:
        raise SchedulerOutputError(f"sbatch --parsable printed no job id: {stdout!r}")
    return match.group(1)


def parse_id_records(text: str) -> list[int]:
    """The job ids of the :data:`ID_RECORD` lines in ``text`` (others are ignored)."""
    ids = (
        line.split(" ", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith(ID_RECORD + " ")
    )
    return [int(i) for i in ids if is_job_id(i)]
