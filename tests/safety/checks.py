"""Invariants over the real store's rows, the simulated truth, and the audit trail.

Each function returns the list of broken rules (empty: fine), so a test can show all of
them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqi_communicator.errors import InvalidTransitionError
from mqi_communicator.persistence import CaseRecord, GpuRecord, TransitionRecord
from mqi_communicator.statemachine import (
    CASE_STATES_HOLDING_GPU,
    CaseFacts,
    CaseTrigger,
    GpuFacts,
    GpuState,
    GpuTrigger,
    StepInputs,
)
from mqi_communicator.statemachine.effects import resolve
from mqi_communicator.statemachine.machines import fire

from .sim_world import SimWorld

__all__ = ["agreement", "replay", "safety"]

_NOT_TRANSITIONS = {"register", "note", "add"}


def safety(gpus: list[GpuRecord], world: SimWorld) -> list[str]:
    """No GPU is ``available``/``offline`` while a job we placed on it is alive."""
    by_name = {g.name: g for g in gpus}
    out = []
    for job in world.alive_ours():
        gpu = by_name.get(job.gpu or "")
        if gpu is None:
            out.append(f"live job {job.label} on unknown GPU {job.gpu}")
        elif gpu.status in (GpuState.AVAILABLE, GpuState.OFFLINE):
            out.append(
                f"UNSAFE: {gpu.name} is {gpu.status.value} while our job {job.label} "
                f"(id {job.job_id}, {job.state.value}) is alive"
            )
        elif gpu.job_label != job.label:
            # The GPU went to another job while ours still runs: the promise is broken.
            out.append(
                f"UNSAFE: {gpu.name} names job {gpu.job_label}, but our job {job.label} lives on it"
            )
    return out


def agreement(cases: list[CaseRecord], gpus: list[GpuRecord]) -> list[str]:
    """One case per GPU; holding cases <-> exactly one assigned GPU naming them."""
    out = []
    held = [g.case_id for g in gpus if g.case_id is not None]
    if len(held) != len(set(held)):
        out.append(f"a case is held by two GPUs: {held}")
    for g in gpus:
        if (g.status is GpuState.ASSIGNED) != (g.case_id is not None):
            out.append(f"{g.name} is {g.status.value} with case_id {g.case_id}")
    for c in cases:
        holders = [g.name for g in gpus if g.case_id == c.id]
        if c.status in CASE_STATES_HOLDING_GPU:
            if holders != [c.gpu_name]:
                out.append(f"case {c.id} ({c.status.value}) names {c.gpu_name}, held by {holders}")
        elif holders or c.gpu_name is not None:
            out.append(f"case {c.id} ({c.status.value}) still held: {holders} / {c.gpu_name}")
    return out


@dataclass
class _Case:
    status: str
    attempt: int
    label: str | None = None
    gpu_name: str | None = None


@dataclass
class _Gpu:
    status: str
    assigned_case_id: int | None = None
    job_label: str | None = None
    offline_requested: bool = False


def _take(row: _Case | _Gpu, fields: dict[str, object]) -> None:
    """Set the replayed row's tracked fields as the table row's effects say."""
    for key, value in fields.items():
        if hasattr(row, key):
            setattr(row, key, value)


def replay(
    history: list[TransitionRecord], cases: list[CaseRecord], gpus: list[GpuRecord]
) -> list[str]:
    """Rebuild every row from the audit trail alone and compare with the live rows.

    Each recorded move is re-fired on the real machines, and the row is rebuilt with the
    effects the fired table row declares (the very rules the store applies). A GPU
    ``release`` or ``recover`` must carry evidence that frees the GPU as it stood then.
    """
    out: list[str] = []
    rc: dict[int, _Case] = {}
    rg: dict[str, _Gpu] = {}
    for t in history:
        if t.entity == "case":
            assert t.case_id is not None
            _replay_case(t, rc, out)
        else:
            assert t.gpu_name is not None
            _replay_gpu(t, rg, rc, out)
    for c in cases:
        r = rc.get(c.id)
        got = (r.status, r.attempt, r.label, r.gpu_name) if r else None
        want = (c.status.value, c.attempt, c.label, c.gpu_name)
        if got != want:
            out.append(f"replay of case {c.id} gives {got}, row is {want}")
    for g in gpus:
        rgpu = rg.get(g.name)
        ggot = (
            (rgpu.status, rgpu.assigned_case_id, rgpu.job_label, rgpu.offline_requested)
            if rgpu
            else None
        )
        gwant = (g.status.value, g.case_id, g.job_label, g.offline_requested)
        if ggot != gwant:
            out.append(f"replay of {g.name} gives {ggot}, row is {gwant}")
    return out


def _replay_case(t: TransitionRecord, rc: dict[int, _Case], out: list[str]) -> None:
    assert t.case_id is not None
    if t.trigger == "register":
        rc[t.case_id] = _Case(t.to_state, t.attempt or 1)
        return
    r = rc.get(t.case_id)
    if r is None:
        out.append(f"audit row {t.id}: case {t.case_id} moved before it was registered")
        return
    if t.from_state != r.status:
        out.append(f"audit row {t.id}: case {t.case_id} from {t.from_state}, replay at {r.status}")
    if t.trigger in _NOT_TRANSITIONS:
        return
    claiming = t.trigger == CaseTrigger.CLAIM
    facts = CaseFacts(t.case_id, r.status, t.label if claiming else r.label, r.attempt)
    given = StepInputs(t.at, t.case_id, label=t.label, gpu_name=t.gpu_name)
    try:
        to, row = fire(facts, CaseTrigger(t.trigger), t.evidence)
    except InvalidTransitionError as err:
        out.append(f"audit row {t.id}: the case machine refuses it now: {err}")
        return
    if to != t.to_state:
        out.append(f"audit row {t.id}: {t.trigger} goes to {to}, recorded {t.to_state}")
    r.status = t.to_state
    _take(r, resolve(row.effects, facts, given))


def _replay_gpu(
    t: TransitionRecord, rg: dict[str, _Gpu], rc: dict[int, _Case], out: list[str]
) -> None:
    assert t.gpu_name is not None
    if t.trigger == "add":
        rg[t.gpu_name] = _Gpu(t.to_state)
        return
    r = rg.get(t.gpu_name)
    if r is None:
        out.append(f"audit row {t.id}: {t.gpu_name} moved before it was added")
        return
    if t.from_state != r.status:
        out.append(f"audit row {t.id}: {t.gpu_name} from {t.from_state}, replay at {r.status}")
    if t.trigger in _NOT_TRANSITIONS:
        return
    case_id, job_label = r.assigned_case_id, r.job_label
    label = rc[t.case_id].label if t.case_id in rc else None
    if t.trigger == GpuTrigger.ASSIGN:
        case_id, job_label = t.case_id, label
    facts = GpuFacts(t.gpu_name, r.status, case_id, job_label, r.offline_requested)
    given = StepInputs(t.at, t.case_id, label=label)
    try:
        to, row = fire(facts, GpuTrigger(t.trigger), t.evidence)  # re-judges the evidence
    except InvalidTransitionError as err:
        out.append(f"audit row {t.id}: the GPU machine refuses it now: {err}")
        return
    if to != t.to_state:
        out.append(f"audit row {t.id}: {t.trigger} goes to {to}, recorded {t.to_state}")
    r.status = t.to_state
    _take(r, resolve(row.effects, facts, given))
