"""Host health in the database: written by the engine when it changes, read by every view.

The engine decides whether a host is down in memory (``engine/backoff.py``); this module
only records that decision. :func:`record_host_health` upserts the host's row in the
caller's transaction and, when the host went down or came back up, adds the
``host_down``/``host_up`` hook event in the same transaction (persist first, notify
after). :func:`read_host_health` is the one read all views share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import HostHealthRow
from .outbox import EventKind, enqueue_host_event

__all__ = ["HostHealthRecord", "read_host_health", "record_host_health"]

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
    """

    host: str
    up: bool
    since: datetime
    failures: int
    last_error: str
    next_retry_at: datetime | None
    updated_at: datetime


def _record(row: HostHealthRow) -> HostHealthRecord:
    return HostHealthRecord(
        host=row.host,
        up=row.up,
        since=row.since,
        failures=row.failures,
        last_error=row.last_error or "",
        next_retry_at=row.next_retry_at,
        updated_at=row.updated_at,
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
