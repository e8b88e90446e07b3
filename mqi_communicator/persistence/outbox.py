"""The notification outbox: which transitions are events, and the rows that carry them.

:func:`enqueue_event` is called by the store for every audit row it writes, inside the
same transaction, so an event exists exactly when its transition was committed. The
delivery loop (:mod:`mqi_communicator.notify.dispatcher`) takes due rows with
:func:`take_due` (a short lease, so two engines do not send the same row at once), sends
them after the commit and records the outcome with :func:`record_outcome`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import PurePath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..statemachine import Evidence
from .models import Case, HookOutbox

__all__ = [
    "EventKind",
    "OutboxRow",
    "OutboxStatus",
    "enqueue_event",
    "enqueue_host_event",
    "event_kind",
    "has_due",
    "outbox_stats",
    "record_outcome",
    "release",
    "take_due",
]

#: Identifies the document format hooks receive; bumped on incompatible changes.
SCHEMA = "mqi-communicator/hook-event/1"


class EventKind(StrEnum):
    """What a hook can be told about."""

    CASE_FAILED = "case_failed"
    CASE_COMPLETED = "case_completed"
    GPU_ZOMBIE = "gpu_zombie"
    GPU_RECOVERED = "gpu_recovered"
    #: Written with the host's health row (persistence/host_health.py), not a transition.
    HOST_DOWN = "host_down"
    HOST_UP = "host_up"


class OutboxStatus(StrEnum):
    """Where an outbox row is in its delivery."""

    PENDING = "pending"
    DELIVERED = "delivered"
    #: Gave up after the configured number of attempts.
    FAILED = "failed"
    #: No configured hook subscribes to its kind (kept so late hooks are not flooded).
    SKIPPED = "skipped"


def event_kind(entity: str, from_state: str, to_state: str) -> EventKind | None:
    """The event an audit row stands for, or None (pure: the one rule for all writers)."""
    if from_state == to_state:
        return None  # notes and no-op rows
    if entity == "case":
        if to_state == "failed":
            return EventKind.CASE_FAILED
        if to_state == "completed":
            return EventKind.CASE_COMPLETED
        return None
    if to_state == "zombie":
        return EventKind.GPU_ZOMBIE
    if from_state == "zombie":
        return EventKind.GPU_RECOVERED
    return None


def _case_part(row: Case | None, case_id: int | None) -> dict[str, Any] | None:
    if row is None:
        return None if case_id is None else {"id": case_id}
    name = PurePath(row.path).name  # the rule of CaseRecord.name
    return {
        "id": row.id,
        "name": name,
        "path": row.path,
        "state": row.status,
        "attempt": row.attempt,
        "label": row.label,
        "job_id": row.job_id,
        "host": row.host,
        "remote_dir": row.remote_dir,
        "failure_reason": row.failure_reason,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "completed_at": row.completed_at.isoformat() if row.completed_at else None,
    }


def enqueue_event(
    s: Session,
    at: datetime,
    entity: str,
    case_id: int | None,
    gpu_name: str | None,
    from_state: str,
    to_state: str,
    trigger: str,
    evidence: Evidence | None,
    detail: str,
    case: Case | None,
) -> None:
    """Add the outbox row for one audit row if it is an event (same transaction)."""
    kind = event_kind(entity, from_state, to_state)
    if kind is None:
        return
    if case is None and case_id is not None:
        case = s.get(Case, case_id)  # a GPU event names its case; usually in the map
    reason = detail or None
    if kind is EventKind.CASE_FAILED and case is not None and case.failure_reason:
        reason = case.failure_reason
    _add(
        s,
        kind,
        at,
        {
            "case": _case_part(case, case_id),
            "gpu": {"name": gpu_name} if gpu_name else None,
            "transition": {"from": from_state, "to": to_state, "trigger": trigger},
            "reason": reason,
            "evidence": json.loads(evidence.to_json()) if evidence is not None else None,
        },
    )


def enqueue_host_event(
    s: Session, at: datetime, kind: EventKind, host: dict[str, Any], reason: str | None
) -> None:
    """Add a ``host_down``/``host_up`` event (in the transaction writing the host's health).

    Args:
        s: The session of that transaction.
        at: When the health changed.
        kind: :attr:`EventKind.HOST_DOWN` or :attr:`EventKind.HOST_UP`.
        host: The ``host`` part of the document (name, up, since, failures, ...).
        reason: The error that took it down (for ``host_up``: the last one seen).
    """
    down = kind is EventKind.HOST_DOWN
    transition = {
        "from": "up" if down else "down",
        "to": "down" if down else "up",
        "trigger": "host_unreachable" if down else "host_answered",
    }
    _add(
        s,
        kind,
        at,
        {
            "case": None,
            "gpu": None,
            "host": host,
            "transition": transition,
            "reason": reason,
            "evidence": None,
        },
    )


def _add(s: Session, kind: EventKind, at: datetime, body: dict[str, Any]) -> None:
    """The outbox row of one event: ``body`` plus the envelope every document has."""
    event_id = secrets.token_hex(16)
    document = {"schema": SCHEMA, "event_id": event_id, "event": kind.value, "at": at.isoformat()}
    document.update(body)
    s.add(
        HookOutbox(
            event_id=event_id,
            kind=kind.value,
            created_at=at,
            payload=json.dumps(document, ensure_ascii=False, sort_keys=True),
            status=OutboxStatus.PENDING.value,
            next_attempt_at=at,
            attempts=0,
            failures=0,
            done_hooks="",
        )
    )


@dataclass(frozen=True)
class OutboxRow:
    """A due event as the delivery loop sees it."""

    id: int
    event_id: str
    kind: EventKind
    document: dict[str, Any]
    attempts: int
    done_hooks: frozenset[str]


def _due(now: datetime) -> Any:
    return (
        select(HookOutbox)
        .where(HookOutbox.status == OutboxStatus.PENDING.value, HookOutbox.next_attempt_at <= now)
        .order_by(HookOutbox.next_attempt_at, HookOutbox.id)
    )


def has_due(s: Session, now: datetime) -> bool:
    """Whether any event is due (a read: an idle loop takes no write lock)."""
    return s.scalars(_due(now).limit(1)).first() is not None


def release(s: Session, row_ids: Sequence[int], now: datetime) -> None:
    """Hand taken but unsent rows back at once (the sender is stopping)."""
    for row_id in row_ids:
        row = s.get(HookOutbox, row_id)
        if row is not None and row.status == OutboxStatus.PENDING.value:
            row.next_attempt_at = now
    s.flush()


def take_due(s: Session, now: datetime, limit: int, lease: timedelta) -> list[OutboxRow]:
    """Up to ``limit`` pending rows due at ``now``, leased for ``lease`` (oldest first).

    The lease pushes ``next_attempt_at`` forward, so a crashed sender's rows come back
    after it and a second engine skips rows being sent (``SKIP LOCKED`` on PostgreSQL).
    """
    q = _due(now).limit(limit).with_for_update(skip_locked=True)
    out: list[OutboxRow] = []
    for row in s.scalars(q):
        row.next_attempt_at = now + lease
        done = frozenset(h for h in row.done_hooks.split(",") if h)
        document: dict[str, Any] = json.loads(row.payload)
        out.append(
            OutboxRow(row.id, row.event_id, EventKind(row.kind), document, row.attempts, done)
        )
    s.flush()
    return out


def record_outcome(
    s: Session,
    row_id: int,
    now: datetime,
    *,
    accepted: Sequence[str],
    errors: Sequence[str],
    status: OutboxStatus,
    retry_at: datetime | None,
) -> None:
    """Store one delivery attempt: hooks that accepted, failures, and what happens next."""
    row = s.get(HookOutbox, row_id)
    if row is None:
        return
    done = {h for h in row.done_hooks.split(",") if h} | set(accepted)
    row.done_hooks = ",".join(sorted(done))
    row.attempts += 1
    row.failures += len(errors)
    row.status = status.value
    if errors:
        row.last_error = "; ".join(errors)[:2000]
    if status is OutboxStatus.DELIVERED:
        row.delivered_at = now
    if retry_at is not None:
        row.next_attempt_at = retry_at
    s.flush()


def outbox_stats(s: Session) -> dict[str, int]:
    """Rows per status (every status, zeros included) and ``failures_total`` (for metrics)."""
    out = {st.value: 0 for st in OutboxStatus}
    for status, n in s.execute(select(HookOutbox.status, func.count()).group_by(HookOutbox.status)):
        out[str(status)] = int(n)
    total = s.scalar(select(func.coalesce(func.sum(HookOutbox.failures), 0)))
    out["failures_total"] = int(total or 0)
    return out
