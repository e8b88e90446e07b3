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
  call (``SimulatedCrash`` is a ``BaseException``, so nothing in the engine catches it);
* the evidence the boundary work of issue 8 makes honest, as the adapters report it
  once that work is merged (switches below say what today's adapters would say):
  a job may leave a *detached descendant* that outlives it (``alive`` stays True; a kill
  of ours ends it too); the probe may go *blind* (no writable /tmp: liveness of a started
  job is UNKNOWN); a case may carry a *forged* ``.mqi/`` (ignored: no attempt token);
* ``on_call`` runs once at the start of one remote call (a second engine acting while
  this one waits on the network).

``seen`` counts how often each of those situations reached a poll (coverage notes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mqi_communicator.errors import (
    HostUnreachableError,
    SchedulerUnavailableError,
    SubmissionRejectedError,
)
from mqi_communicator.remote.protocol import JobRef, JobSpec, JobStatus
from mqi_communicator.statemachine.jobs import JobState

__all__ = ["FORGED_EXIT", "FakeClock", "SimJob", "SimScheduler", "SimWorld", "SimulatedCrash"]

#: Where a forged exit marker sits in a case folder (the sim never writes it itself).
FORGED_EXIT = ".mqi/exit"

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
    #: A descendant left the wrapper's process group (setsid, double fork); while it
    #: runs, ``alive`` stays True even after the job ended.
    detached: bool = False


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
    #: The probe cannot tell liveness (no writable /tmp): a started job is UNKNOWN.
    blind: bool = False
    #: The probe finds descendants by the attempt token (issue 8). False: as today, a
    #: detached descendant is invisible and its job's processes look gone.
    sees_descendants: bool = True
    #: Markers count only with the attempt token (issue 8). False: as today, a forged
    #: exit marker in the case folder makes a job that has not started look finished.
    trusts_unsigned_markers: bool = False
    #: Run once at the start of the next remote call (then cleared).
    on_call: Callable[[], None] | None = None
    seen: Counter[str] = field(default_factory=Counter)

    # -- crash and reachability, checked at the start of every remote call ----------------
    def _enter(self) -> None:
        self.calls += 1
        if self.on_call is not None:
            hook, self.on_call = self.on_call, None
            hook()
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

    def finish(
        self, job: SimJob, state: JobState, exit_code: int | None = None, *, by_us: bool = False
    ) -> None:
        """The job ends in ``state``; its group is gone, a detached descendant lives on
        unless our kill (``by_us``: it ends every process of the job) took it too.
        A success writes results."""
        if state in (JobState.SUCCEEDED, JobState.FAILED):
            if not job.started and job.remote_dir in self.revoked:
                self._no_op(job)
                return
            job.started = True  # it ran
        if by_us:
            job.detached = False
        job.state, job.kill_pending, job.exit_code = state, False, exit_code
        job.alive = job.detached
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
                # The record is gone but the wrapper's group (or a descendant) still runs.
                return self._orphan(mine)
        if job is None:
            return JobStatus(JobState.ABSENT, processes_gone=True)
        return self._evidence_of(job)

    def _evidence_of(self, job: SimJob) -> JobStatus:
        """What the markers and the scheduler say about ``job`` (see the switches)."""
        if job.ours and self._forged(job):
            if self.trusts_unsigned_markers and not job.started:
                return JobStatus(JobState.SUCCEEDED, exit_code=0, processes_gone=True)
            self.seen["forged_marker"] += 1
        if job.ours and job.started and self.blind:
            self.seen["unknown_liveness"] += 1
            return JobStatus(JobState.UNKNOWN, detail="probe could not tell liveness")
        if job.state is JobState.QUEUED:
            return JobStatus(JobState.QUEUED, processes_gone=None)
        if job.state is JobState.RUNNING:
            return JobStatus(JobState.RUNNING, processes_gone=False)
        gone = not job.alive
        if job.detached and job.alive:
            self.seen["detached_descendant"] += 1
            gone = not self.sees_descendants
        return JobStatus(job.state, exit_code=job.exit_code, processes_gone=gone)

    def _orphan(self, job: SimJob) -> JobStatus:
        if job.started and self.blind:
            self.seen["unknown_liveness"] += 1
            return JobStatus(JobState.UNKNOWN, detail="orphan; probe could not tell liveness")
        if job.detached and job.state in _ENDED:
            self.seen["detached_descendant"] += 1
            gone = not self.sees_descendants
            return JobStatus(JobState.ABSENT, processes_gone=gone, detail="descendant")
        return JobStatus(JobState.ABSENT, processes_gone=False, detail="orphan")

    def _forged(self, job: SimJob) -> bool:
        return (self.remote_root / job.remote_dir.lstrip("/") / FORGED_EXIT).is_file()


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
        if spec.remote_dir in w.revoked:
            # A late submit (its engine lost its lease mid-call) lands after another
            # engine took the start claim: the wrapper finds it taken and runs nothing.
            w._no_op(job)
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


@dataclass
class FakeClock:
    """A controllable clock for the reconciler (aware UTC)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now
