"""Read queries of the store. Each takes an explicit ``Session`` and returns records."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import NotFoundError
from ..statemachine import CaseState
from .models import Case, CaseTransition, GpuResource
from .records import (
    CaseRecord,
    GpuRecord,
    TransitionRecord,
    case_record,
    gpu_record,
    transition_record,
)

__all__ = [
    "count_by_status",
    "find_case",
    "get_case",
    "get_gpu",
    "history",
    "list_cases",
    "list_gpus",
    "page_cases",
]


def get_case(s: Session, case_id: int) -> CaseRecord:
    """The case with ``case_id``, or :class:`NotFoundError`."""
    row = s.get(Case, case_id)
    if row is None:
        raise NotFoundError(f"no case with id {case_id}")
    return case_record(row)


def find_case(s: Session, path: str) -> CaseRecord | None:
    """The latest case registered for ``path`` (a folder dropped again has several)."""
    q = select(Case).where(Case.path == path).order_by(Case.id.desc()).limit(1)
    row = s.scalars(q).first()
    return case_record(row) if row is not None else None


def list_cases(
    s: Session,
    statuses: Iterable[CaseState] | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[CaseRecord]:
    """Cases in id order, optionally only those in ``statuses`` (uses the status index)."""
    q = select(Case).order_by(Case.id)
    if statuses is not None:
        wanted = [str(x) for x in statuses]
        if not wanted:
            return []
        q = q.where(Case.status.in_(wanted))
    if offset:
        q = q.offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return [case_record(r) for r in s.scalars(q)]


def page_cases(
    s: Session,
    *,
    state: CaseState | None = None,
    search: str = "",
    before_id: int | None = None,
    limit: int = 50,
) -> list[CaseRecord]:
    """One page of cases, newest first: keyset paging (``id < before_id``), no OFFSET.

    Keyset paging keeps every page an index range on the primary key, however deep;
    ``search`` matches a substring of the path, case-insensitively (``%`` and ``_`` are
    literal).
    """
    q = select(Case).order_by(Case.id.desc()).limit(limit)
    if state is not None:
        q = q.where(Case.status == state.value)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(Case.path.ilike(f"%{escaped}%", escape="\\"))
    if before_id is not None:
        q = q.where(Case.id < before_id)
    return [case_record(r) for r in s.scalars(q)]


def count_by_status(s: Session) -> dict[CaseState, int]:
    """How many cases are in each state (every state present, zeros included)."""
    out = dict.fromkeys(CaseState, 0)
    for status, n in s.execute(select(Case.status, func.count()).group_by(Case.status)):
        out[CaseState(status)] = int(n)
    return out


def get_gpu(s: Session, name: str) -> GpuRecord:
    """The GPU named ``name``, or :class:`NotFoundError`."""
    row = s.get(GpuResource, name)
    if row is None:
        raise NotFoundError(f"no GPU named {name!r}")
    return gpu_record(row)


def list_gpus(s: Session) -> list[GpuRecord]:
    """Every GPU, in name order."""
    return [gpu_record(r) for r in s.scalars(select(GpuResource).order_by(GpuResource.name))]


def history(
    s: Session,
    *,
    case_id: int | None = None,
    gpu_name: str | None = None,
    limit: int | None = None,
) -> list[TransitionRecord]:
    """Audit rows in id order; with ``limit``, the most recent ``limit`` of them."""
    q = select(CaseTransition)
    if case_id is not None:
        q = q.where(CaseTransition.case_id == case_id)
    if gpu_name is not None:
        q = q.where(CaseTransition.gpu_name == gpu_name)
    if limit is not None:
        rows = list(s.scalars(q.order_by(CaseTransition.id.desc()).limit(limit)))
        rows.reverse()
    else:
        rows = list(s.scalars(q.order_by(CaseTransition.id)))
    return [transition_record(r) for r in rows]
