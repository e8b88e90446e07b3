"""The claim: one transaction that gives a free GPU to a waiting case.

It locks the case, picks a free GPU with ``FOR UPDATE SKIP LOCKED`` (a GPU another
claimer is taking is simply not a candidate), stores the job label, remote directory
and the attempt's secret token, and fires case ``claim`` + GPU ``assign`` together.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..statemachine import (
    CaseFacts,
    CaseTrigger,
    GpuTrigger,
    StepInputs,
    legal_triggers,
    may_fire,
    plan_step,
    sources_of,
)
from .models import GpuResource
from .records import CaseRecord, GpuRecord, case_facts, case_record, gpu_facts, gpu_record
from .store_lease import lease_until
from .store_rows import lock_case, move_case, move_gpu

__all__ = ["ClaimPlan", "claim"]

#: Decides the job label and remote directory for a case on a GPU (called inside the lock).
ClaimPlan = Callable[[CaseRecord, GpuRecord], tuple[str, str]]


def _free_gpu(s: Session, case: CaseFacts, candidates: Sequence[str] | None) -> GpuResource | None:
    """The first candidate GPU the machine would assign to ``case``, locked; or None."""
    # Only rows in a state ``assign`` fires from are looked at (the machine's own list);
    # its guards (offline requested, ...) judge each locked row.
    where = GpuResource.status.in_(sources_of(GpuTrigger.ASSIGN))
    if candidates is None:
        candidates = list(
            s.scalars(select(GpuResource.name).where(where).order_by(GpuResource.name))
        )
    for name in candidates:  # in the caller's order of preference
        # SKIP LOCKED: a GPU another claimer is taking is simply not a candidate.
        q = select(GpuResource).where(where, GpuResource.name == name)
        row = s.scalars(q.with_for_update(skip_locked=True)).first()
        if row is not None and may_fire(
            replace(gpu_facts(gpu_record(row)), case_id=case.case_id), GpuTrigger.ASSIGN, None
        ):
            return row
    return None


def claim(
    s: Session,
    case_id: int,
    now: datetime,
    plan: ClaimPlan,
    candidates: Sequence[str] | None = None,
    lease: tuple[str, float] | None = None,
) -> tuple[CaseRecord, GpuRecord] | None:
    """Lock the case and one free GPU; fire case ``claim`` + GPU ``assign``.

    ``lease``: ``(owner, ttl_s)`` to give the claimer the case's lease in the same
    transaction (engines sharing a database; see :mod:`.store_lease`).
    """
    case = lock_case(s, case_id)
    facts = case_facts(case_record(case))
    if CaseTrigger.CLAIM not in legal_triggers("case", facts.state):
        return None
    gpu = _free_gpu(s, facts, candidates)
    if gpu is None:
        return None
    label, remote_dir = plan(case_record(case), gpu_record(gpu))
    # The attempt's secret, stored with the label before anything is sent: markers and
    # processes count as this attempt's only when they carry it (remote/job/markers.py).
    given = StepInputs(
        now=now,
        case_id=case.id,
        label=label,
        remote_dir=remote_dir,
        host=gpu.host,
        gpu_name=gpu.name,
        token=secrets.token_hex(16),
    )
    step = plan_step(
        replace(facts, label=label),
        CaseTrigger.CLAIM,
        gpu_facts(gpu_record(gpu)),
        GpuTrigger.ASSIGN,
        None,
        given,
    )
    move_case(s, case, CaseTrigger.CLAIM, step, now, None, "", gpu.name)
    move_gpu(s, gpu, GpuTrigger.ASSIGN, step, now, None, "", case.id)
    if lease is not None:
        case.lease_owner = lease[0]
        case.lease_expires_at = lease_until(s, lease[1])
    s.flush()
    return case_record(case), gpu_record(gpu)
