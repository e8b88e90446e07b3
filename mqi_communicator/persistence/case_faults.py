"""Which live cases are held back by the engine's fault boundary, for ``status``.

A case is held back while it backs off (``next_attempt_at`` in the future) or carries
a count of consecutive failures (local errors, failed downloads, waits for a full
results disk). See :mod:`mqi_communicator.engine.fault`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..statemachine import TERMINAL_CASE_STATES, CaseState
from .models import Case
from .records import CaseRecord, case_record

__all__ = ["held_back_cases"]

_LIVE = [s.value for s in CaseState if s not in TERMINAL_CASE_STATES]


def held_back_cases(s: Session, now: datetime, *, limit: int = 100) -> list[CaseRecord]:
    """Live cases backing off or failing, oldest first (at most ``limit``)."""
    q = (
        select(Case)
        .where(Case.status.in_(_LIVE))
        .where(
            or_(
                Case.next_attempt_at > now,
                Case.local_failures > 0,
                Case.storage_waits > 0,
                Case.transient_failures > 0,
            )
        )
        .order_by(Case.id)
        .limit(limit)
    )
    return [case_record(row) for row in s.scalars(q)]
