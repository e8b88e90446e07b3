"""Per-host exponential backoff: the one place that decides when to try a host again.

Time is passed in, so the schedule is testable without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["Backoff", "HostHealth"]


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


@dataclass
class HostHealth:
    """Tracks which hosts failed recently; a down host is skipped until its backoff ends."""

    backoff: Backoff = field(default_factory=Backoff)
    _failures: dict[str, int] = field(default_factory=dict)
    _down_until: dict[str, datetime] = field(default_factory=dict)
    _last_error: dict[str, str] = field(default_factory=dict)

    def is_down(self, host: str, now: datetime) -> bool:
        """True while ``host`` is inside its backoff window."""
        until = self._down_until.get(host)
        return until is not None and now < until

    def failed(self, host: str, now: datetime, error: str = "") -> timedelta:
        """Record a failure; returns how long the host is now skipped."""
        n = self._failures.get(host, 0) + 1
        self._failures[host] = n
        delay = self.backoff.delay(n)
        self._down_until[host] = now + delay
        self._last_error[host] = error
        return delay

    def succeeded(self, host: str) -> None:
        """The host answered: forget its failures."""
        self._failures.pop(host, None)
        self._down_until.pop(host, None)
        self._last_error.pop(host, None)

    def failures(self, host: str) -> int:
        """Consecutive failures so far."""
        return self._failures.get(host, 0)

    def last_error(self, host: str) -> str:
        """The last error text seen for ``host`` ("" when healthy)."""
        return self._last_error.get(host, "")
