"""Exhaustive breadth-first exploration of the abstract world, with the safety invariant.

Every interleaving of events up to a depth is visited (states are deduplicated, so a state
reached by two paths is expanded once). In every state the invariants below must hold;
the first violation is returned with the shortest event trace that reaches it (BFS).

Invariants (the same ones the Hypothesis machine checks on the real store):

* ``unkilled-gpu-free``: no GPU is ``available`` (or ``offline``) while a job we placed on
  it is alive in the truth -- the safety promise;
* ``gpu-tracks-job``: a GPU under a live job of ours is ``assigned``/``zombie`` and still
  names that job's label (so it can be killed and later proven gone);
* ``one-case-per-gpu``: no two GPUs hold the same case, no GPU holds two cases;
* ``rows-agree``: a case in ``submitting``/``running`` is held by exactly one ``assigned``
  GPU, which names it; every other GPU holds no case.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mqi_communicator.statemachine import (
    CASE_STATES_HOLDING_GPU,
    TERMINAL_CASE_STATES,
    CaseState,
    GpuState,
)
from mqi_communicator.statemachine.jobs import JobState

from .abstract_world import Rejected, Rules, World

__all__ = ["Report", "explore", "heal", "violations"]

_FREE = (GpuState.AVAILABLE, GpuState.OFFLINE)


def violations(w: World) -> list[str]:
    """Every invariant broken in ``w`` (empty when ``w`` is safe)."""
    out: list[str] = []
    for j in w.jobs:
        if not j.alive:
            continue
        g = w.gpus[j.gpu]
        if g.status in _FREE:
            out.append(f"unkilled-gpu-free: g{j.gpu} is {g.status.value} while job {j.label} lives")
        elif g.job_label != j.label:
            out.append(f"gpu-tracks-job: g{j.gpu} names {g.job_label}, live job is {j.label}")
    held = [g.case for g in w.gpus if g.case is not None]
    if len(held) != len(set(held)):
        out.append(f"one-case-per-gpu: GPUs hold cases {held}")
    for gi, g in enumerate(w.gpus):
        if g.case is not None and g.status is not GpuState.ASSIGNED:
            out.append(f"rows-agree: g{gi} is {g.status.value} but holds c{g.case}")
        if g.status is GpuState.ASSIGNED:
            if g.case is None:
                out.append(f"rows-agree: g{gi} assigned to no case")
            elif w.cases[g.case].status not in CASE_STATES_HOLDING_GPU:
                out.append(f"rows-agree: g{gi} holds c{g.case} in {w.cases[g.case].status.value}")
            elif w.cases[g.case].gpu != gi:
                out.append(f"rows-agree: g{gi} holds c{g.case}, which names g{w.cases[g.case].gpu}")
    for ci, c in enumerate(w.cases):
        holders = [gi for gi, g in enumerate(w.gpus) if g.case == ci]
        if c.status in CASE_STATES_HOLDING_GPU and holders != [c.gpu]:
            out.append(f"rows-agree: c{ci} is {c.status.value} on g{c.gpu}, held by {holders}")
        if c.status not in CASE_STATES_HOLDING_GPU and (holders or c.gpu is not None):
            out.append(f"rows-agree: c{ci} is {c.status.value} but held by {holders}/g{c.gpu}")
    return out


@dataclass
class Report:
    """What one exploration found, with the figures to print."""

    depth: int
    states: int = 0
    transitions: int = 0
    seconds: float = 0.0
    per_depth: list[int] = field(default_factory=list)
    violation: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    stuck: list[tuple[list[str], str]] = field(default_factory=list)
    max_heal_steps: int = 0
    coverage: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line of figures for the test log and assertion messages."""
        return (
            f"depth={self.depth} states={self.states} transitions={self.transitions} "
            f"seconds={self.seconds:.1f} per_depth={self.per_depth} "
            f"rejected={len(self.rejected)} stuck={len(self.stuck)} "
            f"max_heal_steps={self.max_heal_steps} coverage={self.coverage}"
        )

    def counterexample(self) -> str:
        """The shortest event trace to the first violation, one event a line."""
        lines = [f"  {i + 1:2d}. {e}" for i, e in enumerate(self.trace)]
        return "\n".join(["counterexample:", *lines, *(f"  !! {v}" for v in self.violation)])


def _trace(parents: dict[World, tuple[World | None, str]], w: World) -> list[str]:
    events: list[str] = []
    node: World | None = w
    while node is not None:
        parent, event = parents[node]
        if parent is not None:
            events.append(event)
        node = parent
    return events[::-1]


def explore(
    rules: Rules,
    start: World,
    depth: int,
    *,
    liveness_bound: int | None = None,
    check: Callable[[World], list[str]] = violations,
) -> Report:
    """Breadth-first over every interleaving from ``start`` up to ``depth`` events.

    Stops at the first state that breaks an invariant. With ``liveness_bound``, also runs
    :func:`heal` from every visited state and records the states it cannot bring home.
    """
    t0 = time.perf_counter()
    report = Report(depth)
    parents: dict[World, tuple[World | None, str]] = {start: (None, "start")}
    frontier = [start]
    memo: dict[World, tuple[int, str]] = {}
    for level in range(depth + 1):
        report.per_depth.append(len(frontier))
        nxt: list[World] = []
        for w in frontier:
            broken = check(w)
            if broken:
                report.violation, report.trace = broken, _trace(parents, w)
                break
            if liveness_bound is not None:
                steps, why = heal(rules, w, liveness_bound, memo)
                report.max_heal_steps = max(report.max_heal_steps, steps)
                if why and len(report.stuck) < 5:
                    report.stuck.append((_trace(parents, w), why))
            if level == depth:
                continue
            for event, succ in rules.successors(w):
                report.transitions += 1
                if succ not in parents:
                    parents[succ] = (w, event)
                    nxt.append(succ)
        if report.violation:
            break
        frontier = nxt
    report.states = len(parents)
    report.coverage = coverage(parents)
    report.rejected = rules.rejected
    report.seconds = time.perf_counter() - t0
    return report


def coverage(worlds: Iterable[World]) -> dict[str, int]:
    """How many visited states show each hard situation (proof the search got there)."""
    feats = {
        "zombie_gpu_live_job": lambda w: any(
            j.alive and w.gpus[j.gpu].status is GpuState.ZOMBIE for j in w.jobs
        ),
        "kill_ignored_case_running": lambda w: (
            not w.kills_work and any(c.kill_requested for c in w.cases)
        ),
        "lingering_processes": lambda w: any(
            j.alive and j.sched in (JobState.KILLED, JobState.ABSENT) for j in w.jobs
        ),
        "offline_requested_busy": lambda w: any(
            g.offline_requested and g.status is not GpuState.AVAILABLE for g in w.gpus
        ),
        "retried_case": lambda w: any(c.attempt > 1 for c in w.cases),
        "both_gpus_busy": lambda w: all(g.status is GpuState.ASSIGNED for g in w.gpus),
        "completed_case": lambda w: any(c.status is CaseState.COMPLETED for c in w.cases),
    }
    counts = dict.fromkeys(feats, 0)
    for w in worlds:
        for name, test in feats.items():
            counts[name] += bool(test(w))
    return counts


_HAPPY = ("claim", "submit-ok", "recover-submitting", "poll", "retrieved", "check zombie")
_UNHAPPY = ("crash", "unreachable")


def heal(
    rules: Rules, w: World, bound: int, memo: dict[World, tuple[int, str]] | None = None
) -> tuple[int, str]:
    """From ``w``: heal the network, make kills work, let every job finish, then reconcile.

    Returns ``(reconcile steps used, "")`` when at most ``bound`` reconcile steps bring every
    case to a terminal state and every GPU that is not offline to ``available``; otherwise
    ``(steps, why)``. If no GPU could ever be claimed again (all offline), an operator
    brings the first one back online first -- otherwise a waiting case cannot finish.
    ``memo`` shares results between calls (healing paths from nearby states merge).
    """
    memo = {} if memo is None else memo
    w = w._replace(net_up=True, kills_work=True)
    if all(g.offline_requested or g.status is GpuState.OFFLINE for g in w.gpus):
        for event, succ in rules.successors(w):
            if event == "online g0":
                w = succ
                break
    path: list[World] = []
    while True:
        w = _settle_jobs(w)
        if w in memo:
            steps, why = memo[w]
            break
        why_home = _home(w)
        nxt = _happy_step(rules, w) if why_home is None else None
        if why_home is not None or nxt is None or len(path) > bound:
            steps, why = 0, why_home if why_home is not None else f"stuck at {w}"
            memo[w] = (steps, why)
            break
        path.append(w)
        w = nxt
    for node in reversed(path):
        steps += 1
        memo[node] = (steps, why)
    if steps > bound and not why:
        why = f"home only after {steps} > {bound} steps"
    return steps, why


def _home(w: World) -> str | None:
    """ "" when every case is terminal and every GPU free; a reason if broken; else None."""
    broken = violations(w)
    if broken:
        return f"while healing: {broken}"
    if all(c.status in TERMINAL_CASE_STATES for c in w.cases) and all(
        g.status is GpuState.OFFLINE or (g.status is GpuState.AVAILABLE and not g.offline_requested)
        for g in w.gpus
    ):
        return ""
    return None


def _happy_step(rules: Rules, w: World) -> World | None:
    for event, succ in rules._reconciler(w):
        happy = event.startswith(_HAPPY) or event.startswith("kill(")
        if happy and not any(u in event for u in _UNHAPPY) and succ != w:
            return succ
    return None


def _settle_jobs(w: World) -> World:
    """Kills take effect, lingering processes die, live jobs end (succeed)."""
    jobs = []
    for j in w.jobs:
        if j.alive:
            sched = j.sched
            if j.kill_pending:
                sched = JobState.KILLED
            elif sched in (JobState.QUEUED, JobState.RUNNING):
                sched = JobState.SUCCEEDED
            j = j._replace(sched=sched, alive=False, kill_pending=False)
        jobs.append(j)
    return w._replace(jobs=tuple(jobs))
