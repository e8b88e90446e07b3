"""Pure: what the marker probe's output says about local jobs (no tool but the markers).

The probe's text is parsed by :func:`~mqi_communicator.remote.job.marker_probe.parse_probe`;
this maps it onto each job, refusing markers that name another process group.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mqi_communicator.errors import SchedulerOutputError
from mqi_communicator.remote.job.markers import parse_probe, probe_key, status_from_markers
from mqi_communicator.remote.protocol import JobRef, JobStatus
from mqi_communicator.statemachine.jobs import JobState

__all__ = ["found_job", "poll_statuses"]

_log = logging.getLogger(__name__)


def poll_statuses(
    refs: Sequence[JobRef], stdout: str, stderr: str, *, where: str
) -> dict[JobRef, JobStatus]:
    """The status of every ref from one poll probe's output (``where`` names the host)."""
    infos = parse_probe(stdout)
    statuses: dict[JobRef, JobStatus] = {}
    for ref in refs:
        info = infos.get(probe_key(ref.remote_dir, ref.token))
        if info is None:
            _log.warning(
                "%s: no marker record for %s; raw probe output: %r (stderr %r)",
                where,
                ref.remote_dir,
                stdout[-2000:],
                stderr[-2000:],
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


def found_job(
    stdout: str, stderr: str, label: str, remote_dir: str, *, where: str
) -> JobRef | None:
    """The job whose markers for ``remote_dir`` carry ``label`` (with their token), or None.

    Raises:
        SchedulerOutputError: the probe output holds no record for ``remote_dir``.
    """
    info = parse_probe(stdout).get(remote_dir)
    if info is None:
        raise SchedulerOutputError(
            f"{where}: unreadable marker probe for {remote_dir!r}: "
            f"{stdout[-500:]!r} {stderr[-500:]!r}"
        )
    if info.label != label or info.pgid is None:
        return None
    return JobRef(str(info.pgid), label, remote_dir, token=info.token)
