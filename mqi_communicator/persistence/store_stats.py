"""Aggregate read queries over the audit trail, for ``/metrics``: all the work is in SQL.

Each query covers an id range of ``case_transitions`` (``after_id < id <= upto_id``),
so a caller can aggregate the settled past once and only the recent rows per scrape
(see :mod:`mqi_communicator.web.metrics`). Durations are the time a case spent in one
state: from the audit row that entered it to the row that left it (the previous move
of the same case, by a window function over ``(case_id, id)``; notes do not count).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, case, extract, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from ..statemachine import GpuState
from .models import CaseTransition, GpuResource

__all__ = [
    "AuditAggregate",
    "StateDurations",
    "audit_aggregate",
    "count_gpus_by_status",
    "last_transition_id",
    "settled_transition_id",
]


@dataclass
class StateDurations:
    """A histogram of seconds spent in one state: cumulative counts per upper bound."""

    bounds: tuple[float, ...]
    cumulative: list[int]
    total_s: float = 0.0
    count: int = 0

    def add(self, other: StateDurations) -> None:
        """Add ``other`` (same bounds) into this histogram."""
        if other.bounds != self.bounds:
            raise ValueError("cannot add histograms with different buckets")
        self.cumulative = [a + b for a, b in zip(self.cumulative, other.cumulative, strict=True)]
        self.total_s += other.total_s
        self.count += other.count


@dataclass
class AuditAggregate:
    """Transitions per ``(entity, trigger)`` and time-in-state histograms per case state."""

    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    durations: dict[str, StateDurations] = field(default_factory=dict)

    def add(self, other: AuditAggregate) -> None:
        """Add ``other`` into this aggregate."""
        self.transitions.update(other.transitions)
        for state, hist in other.durations.items():
            mine = self.durations.get(state)
            if mine is None:
                self.durations[state] = StateDurations(
                    hist.bounds, list(hist.cumulative), hist.total_s, hist.count
                )
            else:
                mine.add(hist)


def last_transition_id(s: Session) -> int:
    """The highest audit row id (0 when the trail is empty)."""
    return int(s.scalar(select(func.max(CaseTransition.id))) or 0)


def settled_transition_id(s: Session, after_id: int, before: datetime) -> int:
    """The highest id above ``after_id`` among rows written before ``before``.

    Rows older than a few minutes cannot be overtaken any more by a transaction that
    drew a lower id and commits later (PostgreSQL sequences), so they are safe to cache.
    """
    q = select(func.max(CaseTransition.id)).where(
        CaseTransition.id > after_id, CaseTransition.at < before
    )
    found = s.scalar(q)
    return int(found) if found is not None else after_id


def count_gpus_by_status(s: Session) -> dict[GpuState, int]:
    """How many GPUs are in each state (every state present, zeros included)."""
    out = dict.fromkeys(GpuState, 0)
    for status, n in s.execute(
        select(GpuResource.status, func.count()).group_by(GpuResource.status)
    ):
        out[GpuState(status)] = int(n)
    return out


def _seconds(
    s: Session,
    start: ColumnElement[datetime],
    end: ColumnElement[datetime] | InstrumentedAttribute[datetime],
) -> Any:
    if s.get_bind().dialect.name == "sqlite":
        # Naive UTC text on SQLite (see UtcDateTime): julianday() parses it.
        days = func.julianday(end, type_=Float) - func.julianday(start, type_=Float)
        return days * 86400.0
    return extract("epoch", end - start)


def _durations(
    s: Session, states: Mapping[str, Sequence[float]], after_id: int, upto_id: int
) -> dict[str, StateDurations]:
    t = CaseTransition
    prev_to = func.lag(t.to_state).over(partition_by=t.case_id, order_by=t.id)
    prev_at = func.lag(t.at, type_=t.at.type).over(partition_by=t.case_id, order_by=t.id)
    moves = select(
        t.id, t.from_state, prev_to.label("prev_to"), _seconds(s, prev_at, t.at).label("d")
    ).where(t.entity == "case", t.from_state != t.to_state, t.id <= upto_id)
    if after_id > 0:
        # Only the cases with a row in the range: per-case index seeks on (case_id, id)
        # instead of a window over the whole trail.
        touched = select(t.case_id).where(t.id > after_id, t.id <= upto_id)
        moves = moves.where(t.case_id.in_(touched))
    spans = moves.subquery()
    bounds = sorted({b for bs in states.values() for b in bs})
    d = spans.c.d
    q = (
        select(
            spans.c.from_state,
            func.count(d),
            func.coalesce(func.sum(d), 0.0),
            *[func.coalesce(func.sum(case((d <= b, 1), else_=0)), 0) for b in bounds],
        )
        .where(
            spans.c.id > after_id,
            spans.c.from_state.in_(list(states)),
            spans.c.prev_to == spans.c.from_state,
        )
        .group_by(spans.c.from_state)
    )
    out = {state: StateDurations(tuple(bs), [0] * len(bs)) for state, bs in states.items()}
    for state, count, total, *cumulative in s.execute(q):
        by_bound = dict(zip(bounds, cumulative, strict=True))
        hist = out[state]
        hist.cumulative = [int(by_bound[b]) for b in hist.bounds]
        hist.total_s, hist.count = float(total), int(count)
    return out


def audit_aggregate(
    s: Session, after_id: int, upto_id: int, states: Mapping[str, Sequence[float]]
) -> AuditAggregate:
    """Aggregate the audit rows with ``after_id < id <= upto_id``.

    Args:
        s: A read session.
        after_id: Exclusive lower bound.
        upto_id: Inclusive upper bound.
        states: Case states to time, each with its histogram bucket bounds (seconds).

    Returns:
        Transition counts by ``(entity, trigger)`` (rows that keep the state, such as
        notes, excluded) and, per state, the histogram of completed stays in the range.
    """
    out = AuditAggregate()
    if upto_id <= after_id:
        for state, bounds in states.items():
            out.durations[state] = StateDurations(tuple(bounds), [0] * len(bounds))
        return out
    rows = s.execute(
        select(CaseTransition.entity, CaseTransition.trigger, func.count())
        .where(
            CaseTransition.id > after_id,
            CaseTransition.id <= upto_id,
            CaseTransition.from_state != CaseTransition.to_state,  # notes, flag-only rows
        )
        .group_by(CaseTransition.entity, CaseTransition.trigger)
    )
    for entity, trigger, n in rows:
        out.transitions[(str(entity), str(trigger))] = int(n)
    out.durations = _durations(s, states, after_id, upto_id)
    return out
