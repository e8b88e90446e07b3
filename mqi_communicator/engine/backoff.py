"""Per-host exponential backoff: the one place that decides when to try a host again.

Time is passed in, so the schedule is testable without sleeping. The decision lives
here, in memory; whoever wants to know (the database, for other processes) is told of
each change through :attr:`HostHealth.on_change`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["Backoff", "HostChange", "HostHealth"]


@dataclass(frozen=True)
class Backoff:
    """``base * factor**(n-1)`` seconds after the n-th consecutive failure, capped."""

    base_s: float = 5.0
    factor: float = 2.0
    cap_s: float = 600.0

    def delay(self, failures: int) -> timedelta:
        """The wait after ``failures`` consecutive failures (0 -> no wait)."""
        if failures <= 0:
            return timedelta(0)
        seconds = min(self.cap_s, self.base_s * self.factor ** (failures - 1))
        return timedelta(seconds=seconds)


@dataclass(frozen=True)
class HostChange:
    """A host failed (again: a new retry time), or answered.

    Attributes:
        host: The host.
        up: True when it answered.
        at: The failure's time; None for an answer (the listener stamps it).
        failures: Consecutive failures (0 when up).
        error: The failure's text.
        retry_at: When the host is tried again (down only).
    """

    host: str
    up: bool
    at: datetime | None = None
    failures: int = 0
    error: str = ""
    retry_at: datetime | None = None


@dataclass
class HostHealth:
    """Tracks which hosts failed recently; a down host is skipped until its backoff ends.

    ``on_change`` is told of every failure and every answer (it drops answers that
    change nothing); it must not raise for a reason that should stop the caller.
    Thread-safe: transfers beside the tick (engine/transfers.py) report failures too.
    """

    backoff: Backoff = field(default_factory=Backoff)
    on_change: Callable[[HostChange], None] | None = None
    _failures: dict[str, int] = field(default_factory=dict)
    _down_until: dict[str, datetime] = field(default_factory=dict)
    _last_error: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def is_down(self, host: str, now: datetime) -> bool:
        """True while ``host`` is inside its backoff window."""
        until = self._down_until.get(host)
        return until is not None and now < until

    def failed(self, host: str, now: datetime, error: str = "") -> timedelta:
        """Record a failure; returns how long the host is now skipped."""
        with self._lock:
            n = self._failures.get(host, 0) + 1
            self._failures[host] = n
            delay = self.backoff.delay(n)
            self._down_until[host] = now + delay
            self._last_error[host] = error
        if self.on_change is not None:
            self.on_change(HostChange(host, False, now, n, error, now + delay))
        return delay

    def succeeded(self, host: str) -> None:
        """The host answered: forget its failures."""
        with self._lock:
            self._failures.pop(host, None)
            self._down_until.pop(host, None)
            self._last_error.pop(host, None)
        if self.on_change is not None:
            self.on_change(HostChange(host, True))

    def failures(self, host: str) -> int:
        """Consecutive failures so far."""
        return self._failures.get(host, 0)

    def last_error(self, host: str) -> str:
        """The last error text seen for ``host`` ("" when healthy)."""
        return self._last_error.get(host, "")
