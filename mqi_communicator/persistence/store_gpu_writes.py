"""Writes that touch only GPU rows: adding configured GPUs, notes, the operator's offline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..statemachine import GpuState, GpuTrigger, StepInputs, plan_step
from .models import GpuResource
from .records import GpuRecord, gpu_facts, gpu_record
from .store_rows import audit, check_attempt, lock_gpu, move_gpu, note

__all__ = ["GPU_NOTE_FIELDS", "set_gpu_offline", "sync_gpus", "update_gpu"]


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


#: Fields ``update_gpu`` may set (never ``status``, never ``offline_requested``).
GPU_NOTE_FIELDS = frozenset(
    {
        "kill_requested_at",
        "next_check_at",
        "host",
        # The fault boundary's bookkeeping (engine/fault.py).
        "local_failures",
        "last_error",
        "next_attempt_at",
    }
)


def update_gpu(
    s: Session,
    name: str,
    now: datetime,
    detail: str,
    fields: dict[str, object],
    *,
    expected_label: str | None = None,
) -> GpuRecord:
    """Set non-status fields of a GPU and write a ``note`` audit row.

    ``expected_label``: the job label the caller's work was about (None: not checked);
    see :func:`.store_rows.check_attempt`.
    """
    gpu = lock_gpu(s, name)
    check_attempt(None, gpu, None, expected_label)
    note(s, gpu, now, detail, fields, GPU_NOTE_FIELDS)
    s.flush()
    return gpu_record(gpu)


def set_gpu_offline(s: Session, name: str, now: datetime, offline: bool) -> GpuRecord:
    """Operator: mark a GPU to leave (or rejoin) the pool; it moves now if it is idle."""
    gpu = lock_gpu(s, name)
    trigger = GpuTrigger.TAKE_OFFLINE if offline else GpuTrigger.BRING_ONLINE
    step = plan_step(None, None, gpu_facts(gpu_record(gpu)), trigger, None, StepInputs(now))
    move_gpu(s, gpu, trigger, step, now, None, f"offline_requested={offline}", None)
    s.flush()
    return gpu_record(gpu)
