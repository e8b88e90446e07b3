"""Host health in the database: written by the engine when it changes, read by every view.

The engine decides whether a host is down in memory (``engine/backoff.py``); this module
only records that decision. :func:`record_host_health` upserts the host's row in the
caller's transaction and, when the host went down or came back up, adds the
``host_down``/``host_up`` hook event in the same transaction (persist first, notify
after). :func:`read_host_health` is the one read all views share.

**Poll faults** live here too, in their own columns (``poll_failures``, ``poll_error``,
``poll_next_at``; migration 0007), not in ``up``/``failures``: a host whose poll raised
*locally* (a bug in an adapter, an error parsing what it said) answered, so it is not
down: its transfers, kills and claims go on and no ``host_down`` event is sent; only its
poll backs off. The row is the one home of that backoff: the engine reads it before each
poll (a restarted engine honours it) and writes it with :func:`record_poll_fault` /
:func:`clear_poll_fault`; ``status``, ``gpus list`` and ``top`` show it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import HostHealthRow
from .outbox import EventKind, enqueue_host_event

__all__ = [
    "HostHealthRecord",
    "clear_poll_fault",
    "read_host_health",
    "record_host_health",
    "record_poll_fault",
]

#: An error text is cut to this many characters (it comes from the far side).
_MAX_ERROR = 2000


@dataclass(frozen=True)
class HostHealthRecord:
    """A host's persisted health.

    Attributes:
        host: The configured host name.
        up: False while the engine backs off from it.
        since: When it went down, or came (back) up.
        failures: Consecutive failures (0 while up).
        last_error: The last error seen ("" if none); kept after recovery.
        next_retry_at: While down, when the engine tries it again.
        updated_at: When the row was last written.
        poll_failures: Consecutive polls that raised locally (0: the last one worked).
        poll_error: The last of them ("" if none; cleared by a good poll).
        poll_next_at: While ``poll_failures``: when the engine polls the host again.
    """

    host: str
    up: bool
    since: datetime
    failures: int
    last_error: str
    next_retry_at: datetime | None
    updated_at: datetime
    poll_failures: int = 0
    poll_error: str = ""
    poll_next_at: datetime | None = None


def _record(row: HostHealthRow) -> HostHealthRecord:
    return HostHealthRecord(
        host=row.host,
        up=row.up,
        since=row.since,
        failures=row.failures,
        last_error=row.last_error or "",
        next_retry_at=row.next_retry_at,
        updated_at=row.updated_at,
        poll_failures=row.poll_failures,
        poll_error=row.poll_error or "",
        poll_next_at=row.poll_next_at,
    )


def read_host_health(s: Session) -> dict[str, HostHealthRecord]:
    """Every recorded host's health, by host name."""
    rows = s.scalars(select(HostHealthRow).order_by(HostHealthRow.host))
    return {r.host: _record(r) for r in rows}


def record_host_health(
    s: Session,
    host: str,
    *,
    up: bool,
    at: datetime,
    failures: int = 0,
    error: str = "",
    retry_at: datetime | None = None,
) -> EventKind | None:
    """Write ``host``'s health as of ``at``; returns the hook event it caused, if any.

    Down: ``since`` moves only when it was up (or unknown) before, so a host failing
    again keeps its ``since`` and gets a new retry time. Up: nothing is written when the
    row already says up. ``host_down`` is enqueued when a host that was up or never
    recorded goes down; ``host_up`` when a recorded-down host answers again.
    """
    row = s.scalars(
        select(HostHealthRow).where(HostHealthRow.host == host).with_for_update()
    ).one_or_none()
    if up and row is not None and row.up:
        return None
    event: EventKind | None = None
    if row is None:
        row = HostHealthRow(host=host, up=up, since=at, failures=0)
        s.add(row)
        event = None if up else EventKind.HOST_DOWN
    elif row.up != up:
        row.since = at
        event = EventKind.HOST_UP if up else EventKind.HOST_DOWN
    row.up = up
    row.failures = 0 if up else failures
    if not up:
        row.last_error = error[:_MAX_ERROR]
    row.next_retry_at = None if up else retry_at
    row.updated_at = at
    s.flush()
    if event is not None:
        rec = _record(row)
        part = {
            "name": rec.host,
            "up": rec.up,
            "since": rec.since.isoformat(),
            "failures": rec.failures,
            "last_error": rec.last_error or None,
            "next_retry_at": rec.next_retry_at.isoformat() if rec.next_retry_at else None,
        }
        enqueue_host_event(s, at, event, part, rec.last_error or None)
    return event


def _row(s: Session, host: str, at: datetime) -> HostHealthRow:
    """``host``'s row, locked; a host never recorded gets one that says up (it answered)."""
    q = select(HostHealthRow).where(HostHealthRow.host == host).with_for_update()
    row = s.scalars(q).one_or_none()
    if row is None:
        row = HostHealthRow(host=host, up=True, since=at, failures=0, updated_at=at)
        s.add(row)
    return row


def record_poll_fault(
    s: Session, host: str, *, at: datetime, failures: int, error: str, retry_at: datetime
) -> None:
    """Record ``host``'s ``failures``-th consecutive poll that raised locally."""
    row = _row(s, host, at)
    row.poll_failures = failures
    row.poll_error = error[:_MAX_ERROR]
    row.poll_next_at = retry_at
    row.updated_at = at
    s.flush()


def clear_poll_fault(s: Session, host: str, *, at: datetime) -> None:
    """A poll of ``host`` worked: its poll-fault columns start afresh."""
    row = _row(s, host, at)
    if row.poll_failures or row.poll_next_at is not None:
        row.poll_failures = 0
        row.poll_error = None
        row.poll_next_at = None
        row.updated_at = at
    s.flush()
