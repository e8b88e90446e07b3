"""How stored facts read to a person: one wording for the CLI, ``top`` and the web console.

Below all of them (the CLI starts the web console, so the web console must not import
the CLI): a time, an elapsed time, an audit row's evidence and why a case is held back
read the same in ``cases show``, ``status``, ``run``, ``top`` and on the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .persistence import CaseRecord, TransitionRecord
from .statemachine import TERMINAL_CASE_STATES
from .textsafe import printable

__all__ = ["HeldBack", "evidence_text", "fmt_elapsed", "fmt_time", "held_back", "one_line"]

#: How ``engine/storage_wait.py`` starts the reason of a wait for the results disk.
_WAITING = "waiting: "


def fmt_time(value: datetime | None) -> str:
    """A short human time (UTC as stored, to the second); ``-`` for None."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_elapsed(seconds: float | None) -> str:
    """``45s``, ``12m05s``, ``3h07m``, ``2d04h``; ``-`` for None."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def one_line(text: str | None) -> str:
    """Text from outside (an error, a name) on one line, control characters escaped."""
    return printable(" ".join(text.split())) if text else ""


def evidence_text(t: TransitionRecord) -> str:
    """The evidence of one audit row in one short phrase ("" if none)."""
    ev = t.evidence
    if ev is None:
        return ""
    parts = [ev.kind.value]
    if ev.label:
        parts.append(f"label={ev.label}")
    if ev.job_id:
        parts.append(f"job={ev.job_id}")
    if ev.detail:
        parts.append(ev.detail)
    return " ".join(parts)


@dataclass(frozen=True)
class HeldBack:
    """Why the engine holds a live case back (see ``engine/fault.py``), ready to show.

    ``name`` and ``why`` are one line each with control characters escaped.
    """

    case_id: int
    name: str
    state: str
    #: Consecutive local failures, failed tries, or waits for the results disk.
    count: int
    #: ``local failure``, ``failed try`` or ``wait``: what ``count`` counts.
    kind: str
    why: str
    next_attempt_at: datetime | None

    @property
    def tries(self) -> str:
        """``3 local failures``, ``1 failed try``, ``2 waits``."""
        plural = "failed tries" if self.kind == "failed try" else f"{self.kind}s"
        return f"{self.count} {self.kind if self.count == 1 else plural}"

    def next_in(self, now: datetime) -> str:
        """``in 4m05s``, ``due`` (the engine takes it at its next tick) or ``-``."""
        if self.next_attempt_at is None:
            return "-"
        left = (self.next_attempt_at - now).total_seconds()
        return f"in {fmt_elapsed(left)}" if left > 0 else "due"

    def line(self, now: datetime) -> str:
        """The whole story on one line (``run``, ``top --once``)."""
        when = f"{fmt_time(self.next_attempt_at)} UTC ({self.next_in(now)})"
        if self.next_attempt_at is None:
            when = "-"
        return f"{self.tries}, next attempt {when}: {self.why}"


def held_back(case: CaseRecord, now: datetime) -> HeldBack | None:
    """Why ``case`` is held back at ``now``, or None when the engine works on it freely.

    The rule of ``persistence.case_faults.held_back_cases``, for one record: a live
    case backing off (next attempt in the future) or carrying a failure count.
    """
    if case.status in TERMINAL_CASE_STATES:
        return None
    backing_off = case.next_attempt_at is not None and case.next_attempt_at > now
    error = case.last_error or ""
    if case.storage_waits and error.startswith(_WAITING):
        count, kind = case.storage_waits, "wait"
        why = "waiting for the results disk: " + error.removeprefix(_WAITING)
    elif case.local_failures:
        count, kind, why = case.local_failures, "local failure", error
    elif case.transient_failures or case.storage_waits or backing_off:
        count = case.transient_failures or case.storage_waits
        kind, why = "failed try", error or case.failure_reason or "backing off"
    else:
        return None
    return HeldBack(
        case_id=case.id,
        name=printable(case.name),
        state=case.status.value,
        count=count,
        kind=kind,
        why=one_line(why),
        next_attempt_at=case.next_attempt_at,
    )
