"""The claim: one transaction that gives a free GPU to a waiting case.

It locks the case, picks a free GPU with ``FOR UPDATE SKIP LOCKED`` (a GPU another
claimer is taking is simply not a candidate), stores the job label, remote directory
and the attempt's secret token, and fires case ``claim`` + GPU ``assign`` together.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..statemachine import CaseFacts, CaseState, GpuFacts, GpuState, plan_step
from .effects import CaseInputs, gpu_effects
from .models import GpuResource
from .records import CaseRecord, GpuRecord, case_record, gpu_record
from .store_lease import lease_until
from .store_rows import lock_case, move_case, move_gpu

__all__ = ["ClaimPlan", "claim"]

#: Decides the job label and remote directory for a case on a GPU (called inside the lock).
ClaimPlan = Callable[[CaseRecord, GpuRecord], tuple[str, str]]


def _pick_gpu(s: Session, candidates: Sequence[str] | None) -> GpuResource | None:
    free = select(GpuResource).where(
        GpuResource.status == GpuState.AVAILABLE.value,
        GpuResource.offline_requested.is_(False),
    )
    # SKIP LOCKED: a GPU another claimer is taking is simply not a candidate.
    if candidates is None:
        q = free.order_by(GpuResource.name).limit(1).with_for_update(skip_locked=True)
        return s.scalars(q).first()
    for name in candidates:  # in the caller's order of preference
        q = free.where(GpuResource.name == name).with_for_update(skip_locked=True)
        row = s.scalars(q).first()
        if row is not None:
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
    if case.status != CaseState.SUBMITTED.value:
        return None
    gpu = _pick_gpu(s, candidates)
    if gpu is None:
        return None
    label, remote_dir = plan(case_record(case), gpu_record(gpu))
    # The attempt's secret, stored with the label before anything is sent: markers and
    # processes count as this attempt's only when they carry it (remote/job/markers.py).
    token = secrets.token_hex(16)
    step = plan_step(
        CaseFacts(case.id, case.status, label),
        "claim",
        GpuFacts(gpu.name, gpu.status, case.id, label, bool(gpu.offline_requested)),
        "assign",
    )
    given = CaseInputs(
        now=now,
        attempt=case.attempt,
        label=label,
        remote_dir=remote_dir,
        host=gpu.host,
        gpu_name=gpu.name,
        token=token,
    )
    move_case(s, case, "claim", step.case_from, step.case_to, given, None, "", gpu.name)
    fields = gpu_effects(
        "assign", case_id=case.id, job_label=label, job_dir=remote_dir, job_token=token
    )
    move_gpu(s, gpu, "assign", step.gpu_from, step.gpu_to, fields, now, None, "", case.id)
    if lease is not None:
        case.lease_owner = lease[0]
        case.lease_expires_at = lease_until(s, lease[1])
    s.flush()
    return case_record(case), gpu_record(gpu)
