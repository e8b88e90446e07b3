"""Which ended cases still have a remote folder to settle, and recording that it was.

Used by :mod:`mqi_communicator.engine.retention` through :meth:`Store.read` and
:meth:`Store.write`. ``cases.remote_done`` holds the ``remote_dir`` whose retention was
settled (removed, or kept by the setting); a case retried since has another
``remote_dir``, so its new folder is pending again when it ends.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..statemachine import TERMINAL_CASE_STATES
from .models import Case
from .records import CaseRecord, case_record
from .store_rows import audit

__all__ = ["mark_remote_done", "pending_remote_cleanup"]

_ENDED = sorted(s.value for s in TERMINAL_CASE_STATES)


def pending_remote_cleanup(s: Session, limit: int) -> list[CaseRecord]:
    """Ended cases whose ``remote_dir`` is not settled yet, oldest first."""
    q = (
        select(Case)
        .where(
            Case.status.in_(_ENDED),
            Case.remote_dir.is_not(None),
            or_(Case.remote_done.is_(None), Case.remote_done != Case.remote_dir),
        )
        .order_by(Case.id)
        .limit(limit)
    )
    return [case_record(r) for r in s.scalars(q)]


def mark_remote_done(s: Session, case_id: int, remote_dir: str, now: datetime, detail: str) -> bool:
    """Record ``remote_dir`` as settled (with a note in the audit trail).

    False, writing nothing, when the case no longer has that ``remote_dir`` (retried).
    """
    row = s.scalars(select(Case).where(Case.id == case_id).with_for_update()).one()
    if row.remote_dir != remote_dir:
        return False
    row.remote_done = remote_dir
    audit(
        s,
        now,
        "case",
        case_id=row.id,
        gpu_name=None,
        from_state=row.status,
        to_state=row.status,
        trigger="note",
        detail=detail,
        case=row,
    )
    s.flush()
    return True
