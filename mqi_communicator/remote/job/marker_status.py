"""Pure: what the wrapper's markers (and the token scan) say about one job.

Two rules hold here for every adapter (local, Pueue, Slurm):

* Markers are evidence only when they are ours: the attempt's token (for a job with a
  token) and our label. A foreign or missing token is UNKNOWN, never terminal.
* A state the engine counts as ended (SUCCEEDED, FAILED, ABSENT) always carries a
  definite ``processes_gone``: when liveness cannot be told the answer is UNKNOWN, so
  an exit marker with a process that may still live never frees a GPU.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mqi_communicator.remote.job.marker_probe import MarkerInfo
from mqi_communicator.remote.protocol import JobStatus
from mqi_communicator.statemachine.jobs import JobState

__all__ = ["status_from_markers", "trusted_markers"]


def _foreign(info: MarkerInfo, label: str, token: str | None) -> str | None:
    """Why ``info`` is not evidence about (``label``, ``token``), or None if it is."""
    if token is None:
        if not info.legacy:
            return "a job without a token has its markers in the case (pre-upgrade layout)"
    elif info.legacy:
        return "a job with a token never uses the in-case marker place"
    elif info.token is None:
        if info.wrapper_started or info.label is not None:
            return "markers without the attempt's token"
    elif info.token != token:
        return "the marker directory holds another attempt's token"
    if info.label is not None and info.label != label:
        return f"label marker is {info.label!r}, expected {label!r}"
    return None


def trusted_markers(info: MarkerInfo | None, label: str, token: str | None) -> MarkerInfo | None:
    """``info`` when it is evidence about the job (``label``, ``token``), else None."""
    if info is None or _foreign(info, label, token) is not None:
        return None
    return info


def _unknown(detail: str, info: MarkerInfo | None = None) -> JobStatus:
    gone = info.processes_gone if info is not None else None
    # "False" (seen alive) is still worth passing on; "True" never comes with UNKNOWN.
    return JobStatus(
        JobState.UNKNOWN, detail=detail, processes_gone=False if gone is False else None
    )


def status_from_markers(info: MarkerInfo | None, label: str, token: str | None) -> JobStatus:
    """What the markers alone say about the job ``label`` of the attempt ``token``.

    * no record, foreign token or label -> UNKNOWN;
    * exit marker -> SUCCEEDED (0), KILLED (signal marker) or FAILED (code + log tail),
      with ``processes_gone`` False while a process with the token (or the group) lives;
      UNKNOWN when that cannot be told;
    * pgid marker, no exit: something alive -> RUNNING; group gone and no process with
      the token -> KILLED (SIGKILL or reboot); otherwise UNKNOWN;
    * no marker of the wrapper: nothing can run -> ABSENT ("never started"); a process
      with the token -> RUNNING (the wrapper is starting); otherwise UNKNOWN. Adapters
      whose scheduler can hold a job queued decide with the scheduler's answer instead.

    Args:
        info: The probe's record (None: no record in the output).
        label: Our job label.
        token: The attempt's token; None for a job started before tokens existed.
    """
    if info is None:
        return JobStatus(JobState.UNKNOWN, detail="no marker record in the probe output")
    why = _foreign(info, label, token)
    if why is not None:
        return JobStatus(JobState.UNKNOWN, detail=why)
    started = datetime.fromtimestamp(info.started, UTC) if info.started is not None else None
    gone = info.processes_gone
    if info.exit_code is not None:
        if info.signal is not None:
            state, detail = JobState.KILLED, f"ended by SIG{info.signal}"
        elif info.exit_code == 0:
            state, detail = JobState.SUCCEEDED, ""
        else:
            state, detail = JobState.FAILED, f"exit code {info.exit_code}"
        if gone is None:
            return _unknown(f"{state.value} ({detail or 'exit 0'}); liveness unknown", info)
        if gone is False:
            detail = (detail + "; " if detail else "") + _alive_detail(info)
        return JobStatus(
            state,
            exit_code=info.exit_code,
            detail=detail,
            log_tail=info.log_tail,
            started_at=started,
            processes_gone=gone,
        )
    if info.wrapper_started:
        if gone is False:
            return JobStatus(JobState.RUNNING, started_at=started, processes_gone=False)
        if gone is True:
            return JobStatus(
                JobState.KILLED,
                detail="wrapper gone without an exit marker (SIGKILL or reboot)",
                started_at=started,
                processes_gone=True,
            )
        return _unknown("could not tell whether the job's processes are alive", info)
    if gone is False:
        return JobStatus(JobState.RUNNING, detail="wrapper starting", processes_gone=False)
    if gone is None:
        return _unknown("wrapper not started; could not tell whether it is starting", info)
    where = "case directory exists" if info.dir_exists else "case directory missing"
    return JobStatus(
        JobState.ABSENT, detail=f"wrapper never started ({where})", processes_gone=True
    )


def _alive_detail(info: MarkerInfo) -> str:
    if info.token_procs:
        return f"{info.token_procs} process(es) with the job's token still alive"
    return "the wrapper's process group is still alive"
