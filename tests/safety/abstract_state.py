"""The abstract world's values: cases, GPUs, the truth about jobs, and pure helpers.

A world is an immutable, hashable value (named tuples), so the explorer can deduplicate
states. :mod:`.abstract_world` holds the events that move it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

from mqi_communicator.statemachine import CASE_STATES_HOLDING_GPU, CaseState, GpuState
from mqi_communicator.statemachine import decide as D
from mqi_communicator.statemachine.jobs import JobState

__all__ = [
    "NOW",
    "ACase",
    "AGpu",
    "AJob",
    "Rejected",
    "World",
    "case_effects",
    "deliver_kill",
    "find_job",
    "forget_dead",
    "gpu_effects",
    "initial_world",
    "job_events",
    "observe",
    "put_job",
    "replace_at",
    "replace_case",
]

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class ACase(NamedTuple):
    """The persisted facts about one case (what the database would hold)."""

    status: CaseState
    attempt: int = 1
    label: str | None = None
    gpu: int | None = None
    started: bool = False
    timed_out: bool = False  # the job timeout elapsed since ``started``
    kill_requested: bool = False
    kill_reason: str | None = None
    window_elapsed: bool = False  # the kill-confirm window elapsed since the request
    cancel_requested: bool = False


class AGpu(NamedTuple):
    """The persisted facts about one GPU."""

    status: GpuState = GpuState.AVAILABLE
    case: int | None = None
    job_label: str | None = None
    offline_requested: bool = False


class AJob(NamedTuple):
    """The truth about one job we placed: what the scheduler says and whether it runs."""

    label: str
    gpu: int
    sched: JobState = JobState.QUEUED
    alive: bool = True  # its process group exists (it may use the GPU)
    kill_pending: bool = False  # a kill was delivered and will take effect later


class World(NamedTuple):
    """One state of the whole system: database rows, truth, and environment flags."""

    cases: tuple[ACase, ...]
    gpus: tuple[AGpu, ...]
    jobs: tuple[AJob, ...]  # sorted by label
    net_up: bool = True
    kills_work: bool = True
    #: Submits sent whose command has not reached the scheduler yet: (label, gpu).
    in_flight: tuple[tuple[str, int], ...] = ()


class Rejected(NamedTuple):
    """A decision the real machine refused: a decide/step mismatch (a liveness defect)."""

    event: str
    error: str


def initial_world(n_cases: int, n_gpus: int) -> World:
    """Every case registered (``submitted``), every GPU ``available``, nothing running."""
    return World(
        cases=tuple(ACase(CaseState.SUBMITTED) for _ in range(n_cases)),
        gpus=tuple(AGpu() for _ in range(n_gpus)),
        jobs=(),
    )


def replace_at(tup: tuple[Any, ...], i: int, value: Any) -> tuple[Any, ...]:
    return (*tup[:i], value, *tup[i + 1 :])


def find_job(w: World, label: str | None) -> AJob | None:
    for j in w.jobs:
        if j.label == label:
            return j
    return None


def put_job(w: World, job: AJob) -> World:
    others = [j for j in w.jobs if j.label != job.label]
    return w._replace(jobs=tuple(sorted([*others, job])))


def forget_dead(w: World) -> World:
    """Forget dead jobs nobody references: they can no longer matter (keeps states few)."""
    refs = {c.label for c in w.cases if c.status in CASE_STATES_HOLDING_GPU}
    refs |= {g.job_label for g in w.gpus}
    jobs = tuple(j for j in w.jobs if j.alive or j.label in refs)
    return w if jobs == w.jobs else w._replace(jobs=jobs)


def observe(w: World, label: str | None) -> D.JobObservation:
    """What an honest poll (and process-group probe) reports about ``label`` right now."""
    if not w.net_up:
        return D.JobObservation(reachable=False, observed_at=NOW)
    job = find_job(w, label)
    if job is None:
        return D.JobObservation(True, NOW, JobState.ABSENT, processes_gone=True)
    gone: bool | None = not job.alive
    if job.sched is JobState.QUEUED and job.alive:
        gone = None  # not started: nothing to probe yet
    return D.JobObservation(True, NOW, job.sched, processes_gone=gone)


def job_events(w: World, j: AJob) -> Iterator[tuple[str, World]]:
    name = f"job {j.label}"
    dead = {"alive": False, "kill_pending": False}
    if j.sched is JobState.QUEUED and j.alive:
        yield f"{name} starts", put_job(w, j._replace(sched=JobState.RUNNING))
    if j.sched in (JobState.QUEUED, JobState.RUNNING) and j.alive:
        yield (
            f"{name} succeeds",
            forget_dead(put_job(w, j._replace(sched=JobState.SUCCEEDED, **dead))),
        )
        yield f"{name} fails", forget_dead(put_job(w, j._replace(sched=JobState.FAILED, **dead)))
        yield (
            f"{name} killed by a stranger",
            forget_dead(put_job(w, j._replace(sched=JobState.KILLED, **dead))),
        )
        yield f"{name} vanishes", forget_dead(put_job(w, j._replace(sched=JobState.ABSENT, **dead)))
        yield f"{name} record lost, process lives", put_job(w, j._replace(sched=JobState.ABSENT))
    if j.kill_pending:
        yield (
            f"{name} kill takes effect",
            forget_dead(put_job(w, j._replace(sched=JobState.KILLED, **dead))),
        )
        yield (
            f"{name} reported killed, processes linger",
            put_job(w, j._replace(sched=JobState.KILLED, kill_pending=False)),
        )
    if j.alive and j.sched in (
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.KILLED,
        JobState.ABSENT,
    ):
        yield f"{name} processes die", forget_dead(put_job(w, j._replace(**dead)))


def deliver_kill(w: World, label: str | None) -> World:
    job = find_job(w, label)
    if job is None or not job.alive or not w.kills_work or job.kill_pending:
        return w  # "kill returned 0" and nothing happens: ignored, or nothing to kill
    return put_job(w, job._replace(kill_pending=True))


def replace_case(w: World, ci: int, **fields: Any) -> World:
    return w._replace(cases=replace_at(w.cases, ci, w.cases[ci]._replace(**fields)))


def case_effects(
    c: ACase, trigger: str | None, to: CaseState, gi: int | None, label: str | None
) -> ACase:
    if trigger == "claim":
        return c._replace(status=to, label=label, gpu=gi)
    if trigger in ("requeue", "retry"):
        return ACase(to, attempt=c.attempt + 1)
    if to in CASE_STATES_HOLDING_GPU:
        return c._replace(status=to)
    # Left the GPU-holding states: nothing about the job matters to decisions any more.
    return c._replace(
        status=to,
        gpu=None,
        cancel_requested=False,
        kill_requested=False,
        kill_reason=None,
        window_elapsed=False,
        started=False,
        timed_out=False,
    )


def gpu_effects(
    g: AGpu, trigger: str | None, to: GpuState, ci: int | None, label: str | None
) -> AGpu:
    if trigger == "assign":
        return g._replace(status=to, case=ci, job_label=label)
    if trigger == "quarantine":
        return g._replace(status=to, case=None)
    if trigger in ("release", "recover"):
        return g._replace(status=to, case=None, job_label=None)
    return g._replace(status=to)
