"""The narrow protocols every remote adapter implements.

A :class:`Transport` moves bytes and runs commands on one host. A :class:`Scheduler`
submits, polls and kills jobs through a transport. The engine only ever talks to these.

Error contract (the engine depends on it):

* ``HostUnreachableError`` -- we could not ask (connect failed, connection dropped, timeout).
* ``SchedulerUnavailableError`` -- the host answered but the scheduler daemon did not.
* ``RemoteCommandError`` / ``SubmissionRejectedError`` -- the host answered "no".
* ``poll`` never raises for unparseable output: such jobs get ``JobState.UNKNOWN``
  with the raw text logged. It raises ``HostUnreachableError`` when the host cannot be asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from mqi_communicator.statemachine.jobs import JobState

__all__ = [
    "PARTIAL_UPLOAD_PATTERN",
    "CommandResult",
    "GpuBinding",
    "JobRef",
    "JobSpec",
    "JobStatus",
    "ProgressCallback",
    "Scheduler",
    "TransferReport",
    "Transport",
    "check_removable",
    "remote_case_dir",
]

#: Called as ``progress(bytes_done, bytes_total)`` during a transfer.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class CommandResult:
    """What a remote (or local) command returned."""

    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class TransferReport:
    """A verified transfer: how many files and bytes, and the manifest digest.

    ``excluded`` lists the relative paths an upload left out (``exclude=``).
    """

    files: int
    bytes: int
    manifest_sha256: str
    seconds: float
    excluded: tuple[str, ...] = ()


@runtime_checkable
class Transport(Protocol):
    """Runs commands on, and moves directory trees to and from, one host.

    Remote paths are POSIX strings (the GPU server runs Linux); local paths are
    ``pathlib.Path`` so the control PC may run Windows.
    """

    @property
    def host_name(self) -> str:
        """A short name for logs and errors (the configured host name)."""
        ...

    def run(
        self,
        command: Sequence[str] | str,
        *,
        timeout: float,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run ``command``; a sequence is quoted argument by argument, a str is used verbatim.

        Returns the result whatever the exit code. Raises ``HostUnreachableError`` when the
        host cannot be reached or the call exceeds ``timeout``.
        """
        ...

    def upload_tree(
        self,
        local_dir: Path,
        remote_dir: str,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
        exclude: Sequence[str] = (),
        abort: threading.Event | None = None,
    ) -> TransferReport:
        """Copy ``local_dir``'s contents to ``remote_dir`` as one verified, atomic step.

        ``remote_dir`` must not exist yet; it appears only after the sha256 manifest verified.
        ``exclude``: relative paths never sent, matched ignoring letter case, whatever
        they are (``tarstream.enumerate_tree``); the report lists what was left out.
        ``abort``: once set, the stream stops promptly and ``TransferAborted`` is raised;
        nothing appears at ``remote_dir`` (see :mod:`~mqi_communicator.remote.transfer.abort`).
        """
        ...

    def download_tree(
        self,
        remote_dir: str,
        local_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
        abort: threading.Event | None = None,
    ) -> TransferReport:
        """Copy ``remote_dir``'s contents to ``local_dir`` as one verified, atomic step.

        ``local_dir`` must not exist yet; it appears only after verification. A missing
        ``remote_dir`` raises ``RemoteSourceMissingError``. ``abort``: as for uploads.
        """
        ...

    def remove_tree(self, remote_dir: str, *, timeout: float = 600.0) -> None:
        """Delete ``remote_dir`` and everything under it; a missing one is fine.

        Refuses (``ValueError``) a relative path or ``/``. Raises ``HostUnreachableError``
        when the host cannot be asked, ``RemoteCommandError`` when removal failed.
        """
        ...

    def close(self) -> None:
        """Release the connection. Safe to call twice."""
        ...


def check_removable(remote_dir: str) -> str:
    """``remote_dir`` without trailing slashes, if it may be removed: absolute, not ``/``.

    Raises:
        ValueError: a relative path, the root, or a path with ``..`` components.
    """
    norm = remote_dir.rstrip("/")
    parts = norm.split("/")
    if not norm.startswith("/") or len(parts) < 3 or ".." in parts or "." in parts:
        raise ValueError(f"refusing to remove {remote_dir!r}: not an absolute case folder")
    return norm


@dataclass(frozen=True)
class GpuBinding:
    """What one configured GPU resource maps to on its host."""

    name: str
    pueue_group: str | None = None
    slurm_partition: str | None = None
    slurm_gres: str | None = None
    cuda_devices: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """Everything a scheduler needs to start one case's job.

    ``remote_dir`` is the already uploaded case directory; the job runs there through
    the wrapper at ``<remote_dir>.mqi/wrapper.sh`` (the marker directory, beside the case;
    see :mod:`~mqi_communicator.remote.job.markers`), which runs ``command``. Adapters refuse
    a spec without ``token``.
    """

    label: str
    remote_dir: str
    command: Sequence[str]
    gpu: GpuBinding
    env: Mapping[str, str] = field(default_factory=dict)
    time_limit_s: int | None = None
    #: The attempt's secret (see ``cases.attempt_token``); required by every adapter.
    token: str | None = None


@dataclass(frozen=True)
class JobRef:
    """Identifies one of our jobs: the scheduler's id plus our label and directory."""

    job_id: str
    label: str
    remote_dir: str
    #: The attempt's secret the job's markers and processes carry; None: a job started
    #: before tokens existed (judged by its in-case markers and process group only).
    token: str | None = None
    #: A job adopted from the original system: no wrapper, no markers, legacy label.
    legacy: bool = False
    #: A legacy job's Pueue group (its processes carry ``PUEUE_GROUP=<group>``); else None.
    group: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """The observed state of one job.

    ``processes_gone`` is True only when we positively saw that nothing of the job runs:
    the wrapper's process group is gone and no live process carries the attempt's token
    (or the wrapper never started); False when something of it was seen alive; None when
    we could not tell. A state counted as ended (succeeded, failed, absent) never comes
    with None from the marker-based adapters: unknown liveness is ``UNKNOWN``.
    """

    state: JobState
    exit_code: int | None = None
    detail: str = ""
    log_tail: str = ""
    started_at: datetime | None = None
    processes_gone: bool | None = None


@runtime_checkable
class Scheduler(Protocol):
    """Submits, polls and kills jobs on one host."""

    def submit(self, spec: JobSpec) -> JobRef:
        """Start the job. Raises ``SubmissionRejectedError`` or ``HostUnreachableError``."""
        ...

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        """One remote command for all ``refs``; a status for every ref."""
        ...

    def kill(self, ref: JobRef) -> None:
        """Ask for the job to be killed. Returning is NOT evidence the job is gone."""
        ...

    def find_by_label(self, label: str, remote_dir: str) -> JobRef | None:
        """Recover a job after a crash. None means the scheduler answered and it is not there."""
        ...


def remote_case_dir(remote_base: str, case_id: int, attempt: int) -> str:
    """``<remote_base>/mqic_case_<id>_a<attempt>``: every attempt gets a fresh directory."""
    return f"{remote_base.rstrip('/')}/mqic_case_{case_id}_a{attempt}"


#: The name of an upload on its way to :func:`remote_case_dir`: ``<name>.partial-<hex>``
#: (12 hex digits over SSH, 8 on the local transport). A regular expression that Python's
#: ``re`` and POSIX ERE (``find -regextype posix-extended``) read the same way; it matches
#: the whole name, so no ``/`` nor newline can be part of a match.
PARTIAL_UPLOAD_PATTERN = r"mqic_case_[0-9]+_a[0-9]+\.partial-[0-9a-f]{8,12}"
