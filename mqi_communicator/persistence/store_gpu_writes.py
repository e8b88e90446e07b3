"""Writes that touch only GPU rows: adding configured GPUs, notes, the operator's offline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..statemachine import GpuState, plan_step
from .effects import GPU_NOTE_FIELDS
from .models import GpuResource
from .records import GpuRecord, gpu_record
from .store_rows import audit, gpu_facts, lock_gpu, move_gpu, note_detail

__all__ = ["set_gpu_offline", "sync_gpus", "update_gpu"]


def sync_gpus(s: Session, gpus: Sequence[tuple[str, str | None]], now: datetime) -> int:
    """Insert the GPUs not yet known as ``available``; returns how many were added."""
    names = [n for n, _ in gpus]
    known = set(s.scalars(select(GpuResource.name).where(GpuResource.name.in_(names))))
    added = 0
    for name, host in gpus:
        if name in known:
            continue
        known.add(name)
        s.add(
            GpuResource(
                name=name,
                host=host,
                status=GpuState.AVAILABLE.value,
                offline_requested=False,
                status_updated_at=now,
            )
        )
        audit(
            s,
            now,
            "gpu",
            case_id=None,
            gpu_name=name,
            from_state="-",
            to_state=GpuState.AVAILABLE.value,
            trigger="add",
            detail=f"host={host}",
        )
        added += 1
    s.flush()
    return added


def update_gpu(
    s: Session, name: str, now: datetime, detail: str, fields: dict[str, object]
) -> GpuRecord:
    """Set non-status fields of a GPU and write a ``note`` audit row."""
    bad = set(fields) - GPU_NOTE_FIELDS
    if bad:
        raise ValueError(f"update_gpu cannot set {sorted(bad)}; allowed: {sorted(GPU_NOTE_FIELDS)}")
    gpu = lock_gpu(s, name)
    for key, value in fields.items():
        setattr(gpu, key, value)
    audit(
        s,
        now,
        "gpu",
        case_id=gpu.assigned_case_id,
        gpu_name=gpu.name,
        from_state=gpu.status,
        to_state=gpu.status,
        trigger="note",
        detail=note_detail(detail, fields),
    )
    s.flush()
    return gpu_record(gpu)


def set_gpu_offline(s: Session, name: str, now: datetime, offline: bool) -> GpuRecord:
    """Operator: mark a GPU to leave (or rejoin) the pool; moves it now if it is idle."""
    gpu = lock_gpu(s, name)
    gpu.offline_requested = offline
    trigger = None
    if offline and gpu.status == GpuState.AVAILABLE.value:
        trigger = "take_offline"
    elif not offline and gpu.status == GpuState.OFFLINE.value:
        trigger = "bring_online"
    detail = f"offline_requested={offline}"
    if trigger is None:
        audit(
            s,
            now,
            "gpu",
            case_id=gpu.assigned_case_id,
            gpu_name=gpu.name,
            from_state=gpu.status,
            to_state=gpu.status,
            trigger="note",
            detail=detail,
        )
    else:
        step = plan_step(None, None, gpu_facts(gpu), trigger)
        move_gpu(s, gpu, trigger, step.gpu_from, step.gpu_to, {}, now, None, detail, None)
    s.flush()
    return gpu_record(gpu)
