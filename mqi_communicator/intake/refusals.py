"""Entries of the watch folder that are not cases: said once, not at every scan.

A file, a symlink, a FIFO, a folder with an ignored or undecodable name, or a folder
that cannot run (empty, unreadable; registered and failed at once) is logged once with
the reason and queued once for the ``run`` console (:meth:`RefusalLog.drain`). It is
said again only after it changed: it went away, or its reason is another. Kept per
engine process: a restart says each one once more (the log then shows the state at start).
Names are escaped (``textsafe.printable``) before they are logged or queued.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..textsafe import printable

__all__ = ["RefusalLog"]

log = logging.getLogger("mqi_communicator.intake")


class RefusalLog:
    """Remembers what was said about which entry; thread-safe."""

    def __init__(self) -> None:
        self._said: dict[Path, str] = {}
        self._queue: list[str] = []
        self._lock = threading.Lock()

    def report(self, path: Path, reason: str) -> bool:
        """Log and queue ``path``'s refusal unless this very reason was said; True if said."""
        with self._lock:
            if self._said.get(path) == reason:
                return False
            self._said[path] = reason
            # Escaped here, not only by the log formatter: an undecodable name (surrogates)
            # must not reach a handler that cannot encode it.
            self._queue.append(f"intake: {printable(path.name)} refused: {reason}")
        log.warning("intake: %s refused: %s", printable(path), reason)
        return True

    def queue(self, line: str) -> None:
        """Queue a console line said elsewhere already (a case failed at registration)."""
        with self._lock:
            self._queue.append(line)

    def forget_except(self, present: set[Path]) -> None:
        """Drop what was said about entries no longer refused (so a return is said again)."""
        with self._lock:
            for path in [p for p in self._said if p not in present]:
                del self._said[path]

    def forget(self, path: Path) -> None:
        """Drop what was said about ``path``."""
        with self._lock:
            self._said.pop(path, None)

    def drain(self) -> list[str]:
        """The console lines queued since the last call (each refusal once)."""
        with self._lock:
            lines, self._queue = self._queue, []
        return lines
