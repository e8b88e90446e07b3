"""A simulated remote world that knows the truth, behind the real Scheduler/Transport protocols.

It is a stateful fake, not a call recorder: jobs live in a table with their scheduler
record (id, label, state) and, separately, whether their processes still run -- which
is what "alive" means for the safety promise. The semantics are the honest ones real
adapters give (see ``remote/protocol.py``):

* ids are small integers, and a purged record's id is reused by the next submit
  (Pueue does this after ``clean``/``reset``); polls are label-checked, so a reused id
  reports our job ``absent`` unless our processes still live;
* kill is asynchronous: it only marks the job; the kill takes effect later, or the
  scheduler reports ``killed`` while the processes linger, or it is ignored;
* unreachable -> ``HostUnreachableError``; a submit may time out AFTER the job was
  created (outcome unknown);
* a submit may also be cut off BEFORE it reached the scheduler and land later
  (``lost_in_flight``), after the engine's lookup by label said "no such job";
* the start claim of ``wrapper.sh``: a job's wrapper starts only if its directory was not
  revoked (``markers.revoke_snippet``, understood by ``SimTransport.run``); a revoke
  fails once the wrapper started; a job landing or starting in a revoked directory ends
  at once as a no-op success, without ever running;
* a crash of the communicator can be armed to strike before or after the N-th remote
  call (``SimulatedCrash`` is a ``BaseException``, so nothing in the engine catches it).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mqi_communicator.errors import (
    HostUnreachableError,
    RemoteCommandError,
    SchedulerUnavailableError,
    SubmissionRejectedError,
    TransferError,
)
from mqi_communicator.remote.protocol import (
    CommandResult,
    JobRef,
    JobSpec,
    JobState,
    JobStatus,
    ProgressCallback,
    TransferReport,
)

__all__ = ["SimJob", "SimScheduler", "SimTransport", "SimWorld", "SimulatedCrash"]

_ENDED = (JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED, JobState.ABSENT)


class SimulatedCrash(BaseException):
    """The communicator process dies here."""


@dataclass
class SimJob:
    """One job: its scheduler record and the truth about its processes."""

    job_id: str
    label: str
    remote_dir: str
    gpu: str | None  # the GPU resource it runs on
    ours: bool
    state: JobState = JobState.QUEUED
    alive: bool = True
    kill_pending: bool = False
    exit_code: int | None = None
    #: False once the scheduler forgot the record (purged, lost); the id may be reused.
    listed: bool = True
    #: The wrapper took the start claim (its markers exist, whatever happens later).
    started: bool = False


@dataclass
class SimWorld:
    """The truth, the environment switches, and the remote file system (a tmp dir)."""

    remote_root: Path
    reachable: bool = True
    #: ok | unavailable | rejected | timeout_after_create | lost_in_flight
    submit_mode: str = "ok"
    kills_work: bool = True
    upload_ok: bool = True
    download_ok: bool = True
    jobs: list[SimJob] = field(default_factory=list)
    crash_countdown: int | None = None
    #: The network goes down after this many more calls (None: stays as it is).
    drop_countdown: int | None = None
    crash_after_effect: bool = False
    calls: int = 0
    strangers: int = 0
    #: Submits cut off on the way (label, remote_dir, gpu): they may still land.
    in_flight: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: Case directories whose start claim the communicator took (revoked).
    revoked: set[str] = field(default_factory=set)
    #: The race: cut-off submits land and start right before the next revoke arrives.
    start_before_revoke: bool = False

    # -- crash and reachability, checked at the start of every remote call ----------------
    def _enter(self) -> None:
        self.calls += 1
        if self.crash_countdown is not None and not self.crash_after_effect:
            self._tick_crash()
        if self.drop_countdown is not None:
            if self.drop_countdown <= 0:
                self.reachable, self.drop_countdown = False, None
            else:
                self.drop_countdown -= 1
        if not self.reachable:
            raise HostUnreachableError("sim: host unreachable")

    def _leave(self) -> None:
        if self.crash_countdown is not None and self.crash_after_effect:
            self._tick_crash()

    def _tick_crash(self) -> None:
        assert self.crash_countdown is not None
        if self.crash_countdown <= 0:
            self.crash_countdown = None
            raise SimulatedCrash
        self.crash_countdown -= 1

    # -- the truth --------------------------------------------------------------------
    def alive_ours(self) -> list[SimJob]:
        """Our jobs whose processes still run."""
        return [j for j in self.jobs if j.ours and j.alive]

    def _free_id(self) -> str:
        used = {int(j.job_id) for j in self.jobs if j.listed and j.job_id}
        n = 0
        while n in used:
            n += 1
        return str(n)

    def create(self, label: str, remote_dir: str, gpu: str | None, ours: bool) -> SimJob:
        """A new scheduler record with the smallest free id (ids are reused)."""
        job = SimJob(self._free_id(), label, remote_dir, gpu, ours)
        self.jobs.append(job)
        return job

    def listed_by_id(self, job_id: str) -> SimJob | None:
        """The job the scheduler lists under ``job_id`` now (maybe a stranger's)."""
        for j in self.jobs:
            if j.listed and j.job_id == job_id:
                return j
        return None

    def ours_by_label(self, label: str) -> SimJob | None:
        """The newest job of ours with ``label`` (listed or not)."""
        for j in reversed(self.jobs):
            if j.ours and j.label == label:
                return j
        return None

    def start(self, job: SimJob) -> None:
        """The scheduler starts the job: its wrapper runs it unless the start was revoked."""
        if not job.started and job.remote_dir in self.revoked:
            self._no_op(job)
            return
        job.state, job.started = JobState.RUNNING, True

    def _no_op(self, job: SimJob) -> None:
        """The wrapper found its start revoked: exit 0 at once, nothing ran, no results."""
        job.state, job.alive, job.kill_pending, job.exit_code = JobState.SUCCEEDED, False, False, 0

    def revoke(self, remote_dir: str) -> bool:
        """Take the start claim of ``remote_dir``; False when a wrapper already took it."""
        if self.start_before_revoke:
            self.start_before_revoke = False
            pending = len(self.in_flight)
            self.land_in_flight()
            for job in self.jobs[len(self.jobs) - pending :]:
                self.start(job)
        if any(j.ours and j.started and j.remote_dir == remote_dir for j in self.jobs):
            return False
        self.revoked.add(remote_dir)
        (self.remote_root / remote_dir.lstrip("/") / ".mqi").mkdir(parents=True, exist_ok=True)
        for j in self.jobs:
            if j.ours and j.remote_dir == remote_dir and j.alive:
                self._no_op(j)  # queued, never started: it can never run now
        return True

    def land_in_flight(self) -> None:
        """Every cut-off submit reaches the scheduler now (late, after any lookup)."""
        for label, remote_dir, gpu in self.in_flight:
            job = self.create(label, remote_dir, gpu, ours=True)
            if remote_dir in self.revoked:
                self._no_op(job)
        self.in_flight.clear()

    def finish(self, job: SimJob, state: JobState, exit_code: int | None = None) -> None:
        """The job ends in ``state``; its processes are gone. A success writes results."""
        if state in (JobState.SUCCEEDED, JobState.FAILED):
            if not job.started and job.remote_dir in self.revoked:
                self._no_op(job)
                return
            job.started = True  # it ran
        job.state, job.alive, job.kill_pending, job.exit_code = state, False, False, exit_code
        if state is JobState.SUCCEEDED and job.ours:
            out = self.remote_root / job.remote_dir.lstrip("/") / "output"
            out.mkdir(parents=True, exist_ok=True)
            (out / "dose.txt").write_text(f"result of {job.label}\n", encoding="utf-8")

    def add_stranger(self, gpu: str | None) -> SimJob:
        """Somebody else's job, taking the smallest free id (maybe one of our old ids)."""
        self.strangers += 1
        job = self.create(f"stranger-{self.strangers}", "/elsewhere", gpu, ours=False)
        job.state = JobState.RUNNING
        return job

    def purge(self) -> None:
        """The scheduler forgets every ended record (``pueue clean``): ids become free."""
        for j in self.jobs:
            if j.state in _ENDED and j.listed:
                j.listed = False
        self.jobs = [j for j in self.jobs if j.listed or j.alive or j.ours]

    def status_of(self, ref: JobRef) -> JobStatus:
        """What an honest, label-checked poll reports for ``ref``."""
        job = self.listed_by_id(ref.job_id) if ref.job_id else None
        if job is not None and ref.label and job.label != ref.label:
            job = None  # a stranger now holds this id: says nothing about ours
        if job is None and ref.label:
            mine = self.ours_by_label(ref.label)
            if mine is not None and mine.listed:
                job = mine
            elif mine is not None and mine.alive:
                # The record is gone but the wrapper's process group still runs.
                return JobStatus(JobState.ABSENT, processes_gone=False, detail="orphan")
        if job is None:
            return JobStatus(JobState.ABSENT, processes_gone=True)
        if job.state is JobState.QUEUED:
            return JobStatus(JobState.QUEUED, processes_gone=None)
        if job.state is JobState.RUNNING:
            return JobStatus(JobState.RUNNING, processes_gone=False)
        return JobStatus(job.state, exit_code=job.exit_code, processes_gone=not job.alive)


class SimScheduler:
    """The ``Scheduler`` protocol over :class:`SimWorld`."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    def submit(self, spec: JobSpec) -> JobRef:
        """Create the job, or fail as the world's ``submit_mode`` says."""
        w = self.world
        w._enter()
        if w.submit_mode == "unavailable":
            raise SchedulerUnavailableError("sim: pueued is not running")
        if w.submit_mode == "rejected":
            raise SubmissionRejectedError("sim: unknown group", exit_code=1)
        if w.submit_mode == "lost_in_flight":
            w.in_flight.append((spec.label, spec.remote_dir, spec.gpu.name))
            raise HostUnreachableError("sim: connection dropped; the submit is still on its way")
        job = w.create(spec.label, spec.remote_dir, spec.gpu.name, ours=True)
        if w.submit_mode == "timeout_after_create":
            raise HostUnreachableError("sim: connection dropped after the job was queued")
        w._leave()
        return JobRef(job.job_id, job.label, job.remote_dir)

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        """One status per ref, label-checked."""
        self.world._enter()
        out = {ref: self.world.status_of(ref) for ref in refs}
        self.world._leave()
        return out

    def kill(self, ref: JobRef) -> None:
        """Asynchronous: mark the job; it dies later (or never, if kills are ignored)."""
        w = self.world
        w._enter()
        job = w.listed_by_id(ref.job_id) if ref.job_id else None
        if job is None or (ref.label and job.label != ref.label):
            job = w.ours_by_label(ref.label) if ref.label else None
        if job is not None and job.alive and w.kills_work:
            job.kill_pending = True
        w._leave()

    def find_by_label(self, label: str, remote_dir: str) -> JobRef | None:
        """Our job with ``label``: listed, unlisted with live processes, or with markers."""
        w = self.world
        w._enter()
        job = w.ours_by_label(label)
        w._leave()
        if job is None or not (job.listed or job.alive or job.started):
            return None
        return JobRef(job.job_id if job.listed else "", label, remote_dir)


class SimTransport:
    """The ``Transport`` protocol: real files under the world's remote root."""

    host_name = "sim"

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    def _remote(self, remote_dir: str) -> Path:
        return self.world.remote_root / remote_dir.lstrip("/")

    def run(
        self, command: Sequence[str] | str, *, timeout: float, stdin: bytes | None = None
    ) -> CommandResult:
        """The start revoke of ``markers.revoke_snippet``; anything else does nothing."""
        self.world._enter()
        target = _revoked_dir(command)
        if target is not None and not self.world.revoke(target):
            return CommandResult(1, "", "")  # the wrapper's claim is there
        self.world._leave()
        return CommandResult(0, "", "")

    def upload_tree(
        self,
        local_dir: Path,
        remote_dir: str,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
    ) -> TransferReport:
        """Copy the case; all or nothing."""
        self.world._enter()
        if not self.world.upload_ok:
            raise TransferError("sim: upload interrupted")
        target = self._remote(remote_dir)
        if target.exists():
            raise RemoteCommandError(f"sim: {remote_dir} exists", exit_code=1)
        shutil.copytree(local_dir, target)
        self.world._leave()
        return _report(target)

    def download_tree(
        self,
        remote_dir: str,
        local_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
    ) -> TransferReport:
        """Copy results home; all or nothing."""
        self.world._enter()
        if not self.world.download_ok:
            raise TransferError("sim: download interrupted")
        source = self._remote(remote_dir)
        if not source.is_dir():
            raise RemoteCommandError(f"sim: no such directory {remote_dir}", exit_code=2)
        if local_dir.exists():
            raise TransferError(f"sim: {local_dir} exists")
        shutil.copytree(source, local_dir)
        self.world._leave()
        return _report(local_dir)

    def close(self) -> None:
        """Nothing to release."""


def _revoked_dir(command: Sequence[str] | str) -> str | None:
    """The case directory ``command`` revokes, if it is ``markers.revoke_snippet``'s text."""
    if not isinstance(command, str):
        return None
    words = shlex.split(command)
    if words[:2] != ["mkdir", "-p"] or len(words) < 7 or words[5:7] != ["ln", "-s"]:
        return None
    mqi = words[2]
    # <dir>.mqi (attempts with a token) or <dir>/.mqi (claimed before tokens existed)
    return mqi.removesuffix(".mqi").rstrip("/") if mqi.endswith(".mqi") else None


def _report(root: Path) -> TransferReport:
    files = [p for p in root.rglob("*") if p.is_file()]
    return TransferReport(len(files), sum(p.stat().st_size for p in files), "sim", 0.0)


@dataclass
class FakeClock:
    """A controllable clock for the reconciler (aware UTC)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now
