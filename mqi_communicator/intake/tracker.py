"""Tracks top-level directories until they settle; no threads, time passed in.

A directory is *noted* when an event touches anything under it or a scan first sees
it. It is *due* once:

* ready-marker mode: ``<dir>/<ready_marker>`` exists;
* otherwise: no event for ``quiescence_s`` AND no mtime under it newer than that
  (the walk catches writes the watcher missed; the events catch copies that keep
  old mtimes, e.g. robocopy or ``cp -p``).

A directory first seen by a scan counts as changed at that moment, so a copy that was
in progress while the service was down still gets a full quiet period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .scan import is_settled, latest_change

__all__ = ["CheckResult", "Seen", "SettleTracker"]

log = logging.getLogger("mqi_communicator.intake")


class Seen(StrEnum):
    """What the database says about a folder of the watch folder."""

    #: No case, or its case ended and the folder holds other content now: a new case.
    NEW = "new"
    #: Its latest case is still live: look again later (when it ends, the content counts).
    LIVE = "live"
    #: Its latest case ended and the folder holds the same content: nothing to do.
    DONE = "done"


@dataclass
class CheckResult:
    """What one :meth:`SettleTracker.check` found."""

    settled: list[Path] = field(default_factory=list)
    vanished: list[Path] = field(default_factory=list)


class SettleTracker:
    """The set of pending directories and the time of their last change.

    Args:
        quiescence_s: Quiet period that makes a directory a case.
        ready_marker: File name that makes a directory a case instead (None: quiescence).
    """

    def __init__(self, quiescence_s: float, ready_marker: str | None = None) -> None:
        self.quiescence_s = quiescence_s
        self.ready_marker = ready_marker
        self._last: dict[Path, float] = {}

    def note(self, directory: Path, at: float) -> None:
        """Something under ``directory`` changed at ``at`` (epoch seconds)."""
        previous = self._last.get(directory)
        if previous is None or at > previous:
            self._last[directory] = at

    def forget(self, directory: Path) -> bool:
        """Stop tracking ``directory``; True if it was pending."""
        return self._last.pop(directory, None) is not None

    def pending(self) -> list[Path]:
        """Directories not yet settled, in name order."""
        return sorted(self._last)

    def __contains__(self, directory: object) -> bool:
        return directory in self._last

    def next_due_in(self, now: float) -> float | None:
        """Seconds until the earliest pending directory may settle (None: none pending).

        In ready-marker mode nothing settles by time alone, so this is None.
        """
        if not self._last or self.ready_marker is not None:
            return None
        earliest = min(self._last.values()) + self.quiescence_s
        return max(0.0, earliest - now)

    def check(self, now: float) -> CheckResult:
        """Move every settled directory out of the pending set and report it.

        Directories that disappeared are reported in ``vanished`` and dropped.
        """
        result = CheckResult()
        for directory in sorted(self._last):
            last = self._last[directory]
            if self.ready_marker is not None:
                if not directory.is_dir():
                    result.vanished.append(directory)
                elif (directory / self.ready_marker).is_file():
                    result.settled.append(directory)
                continue
            if not is_settled(last_change=last, now=now, quiescence_s=self.quiescence_s):
                continue
            # Quiet by events; confirm with the file system before calling it settled.
            changed = latest_change(directory, now)
            if changed is None:
                result.vanished.append(directory)
            elif is_settled(last_change=changed, now=now, quiescence_s=self.quiescence_s):
                result.settled.append(directory)
            else:
                self._last[directory] = changed
        for directory in (*result.settled, *result.vanished):
            del self._last[directory]
        return result
