"""The watch folder: a watchdog observer feeding a settle tracker, plus periodic scans.

The observer thread only notes events and sets the wake event; settling and
registration happen in :meth:`Intake.poll`, on the engine's thread, so the store is
only ever used from one thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .refusals import RefusalLog
from .scan import classify_entries, is_ignored_name, refusal_reason
from .tracker import Seen, SettleTracker

__all__ = ["Intake"]

log = logging.getLogger("mqi_communicator.intake")


class _Handler(FileSystemEventHandler):
    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads are not changes
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = raw.decode() if isinstance(raw, bytes) else raw
                deleted = event.event_type == "deleted" and raw == event.src_path
                self._intake.on_change(Path(path), deleted=deleted)


class Intake:
    """Turns settled top-level directories of ``watch_dir`` into registered cases.

    Args:
        watch_dir: The folder to watch (absolute).
        register: Called with each settled directory, on the thread calling :meth:`poll`.
        is_known: What the database says about a directory (:class:`Seen`; True means
            ``DONE``, False ``NEW``). Asked at each scan until it is ``DONE``; a change
            under a directory (an event) asks again after it settles, so a folder dropped
            again after its case ended is registered anew (``register`` decides).
        quiescence_s: Quiet period that makes a directory a case.
        ready_marker: If set, the file that makes a directory a case instead.
        scan_interval_s: Full rescans, in case the observer missed events.
        clock: Epoch seconds (``time.time``); tests pass a controllable one.
        wake: Set whenever something happened that may need a :meth:`poll` soon.
    """

    def __init__(
        self,
        watch_dir: Path,
        *,
        register: Callable[[Path], Any],
        is_known: Callable[[Path], bool | Seen],
        quiescence_s: float = 5.0,
        ready_marker: str | None = None,
        scan_interval_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        wake: threading.Event | None = None,
    ) -> None:
        self.watch_dir = watch_dir
        self._register = register
        self._is_known = is_known
        self._scan_interval = scan_interval_s
        self._clock = clock
        self.wake = wake or threading.Event()
        self._tracker = SettleTracker(quiescence_s, ready_marker)
        self._lock = threading.Lock()
        #: Directories judged already. None: its case was live, ask again at each scan;
        #: else the folder's (inode, mtime) when judged DONE: a scan that finds another
        #: asks again (a re-drop seen without file-system events).
        self._known: dict[Path, tuple[int, int] | None] = {}
        self.refusals = RefusalLog()
        self._next_scan: float | None = None
        self._observer: Any = None
        self._started = False
        self._observer_failed = False

    # -- observer thread -------------------------------------------------------------

    def on_change(self, path: Path, *, deleted: bool = False) -> None:
        """A file-system event at ``path`` (any depth under ``watch_dir``)."""
        try:
            rel = path.relative_to(self.watch_dir)
        except ValueError:
            return
        if not rel.parts or is_ignored_name(rel.parts[0]):
            return
        top = self.watch_dir / rel.parts[0]
        with self._lock:
            # A change under a known folder: it settles and is judged again (a re-drop).
            self._known.pop(top, None)
            if deleted and len(rel.parts) == 1:
                if self._tracker.forget(top):
                    log.info("intake: %s was deleted before it settled; dropped", top)
                return
            self._tracker.note(top, self._clock())
        self.wake.set()

    # -- engine thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the observer and scan once (finds directories created while down).

        Never raises: without file-system events (inotify limit, a network share that
        offers none, the folder missing) intake carries on with the periodic scans and
        tries to start the observer again at each one.
        """
        if self._started:
            return
        self._started = True
        self._ensure_observer()
        self.scan()

    def _ensure_observer(self) -> None:
        observer = self._observer
        if observer is not None and observer.is_alive():
            return
        if observer is not None:
            log.warning("intake: the file-system observer stopped; restarting it")
            self._observer = None
        try:
            self.watch_dir.mkdir(parents=True, exist_ok=True)
            observer = Observer()
            observer.schedule(_Handler(self), str(self.watch_dir), recursive=True)
            observer.daemon = True
            observer.start()
        except OSError as err:
            if not self._observer_failed:
                log.warning(
                    "intake: no file-system events for %s (%s); scanning every %.0f s instead",
                    self.watch_dir,
                    err,
                    self._scan_interval,
                )
            self._observer_failed = True
            return
        if self._observer_failed:
            log.info("intake: file-system events for %s are back", self.watch_dir)
        self._observer_failed = False
        self._observer = observer

    def stop(self) -> None:
        """Stop the observer thread. Safe to call twice."""
        self._started = False
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=10)

    def scan(self) -> int:
        """Note every top-level directory not yet known; returns how many are new.

        Refused entries (files, links, ignored names) are logged once (``refusals``).
        """
        now = self._clock()
        self._next_scan = now + self._scan_interval
        if self._started:
            self._ensure_observer()
        if not self.watch_dir.is_dir():
            log.warning("intake: watch folder %s does not exist or is not a folder", self.watch_dir)
            return 0
        candidates, refused = classify_entries(self.watch_dir)
        for path, reason in refused:
            self.refusals.report(path, reason)
        self.refusals.forget_except({path for path, _ in refused})
        present = set(candidates)
        with self._lock:
            for gone in [p for p in self._known if p not in present]:
                del self._known[gone]  # deleted while we were not looking: judge a return
        added = 0
        for top in candidates:
            signature = _signature(top)
            with self._lock:
                if top in self._tracker or (
                    self._known.get(top) is not None and self._known.get(top) == signature
                ):
                    continue
            seen = _as_seen(self._is_known(top))
            with self._lock:
                if seen is Seen.NEW:
                    self._known.pop(top, None)
                    self._tracker.note(top, now)
                else:
                    self._known[top] = signature if seen is Seen.DONE else None
            added += seen is Seen.NEW
        if added:
            log.info("intake: scan found %d new folder(s) in %s", added, self.watch_dir)
        return added

    def poll(self) -> list[Path]:
        """Register every directory that settled (rescanning when due); returns them."""
        now = self._clock()
        if self._next_scan is None or now >= self._next_scan:
            self.scan()
        with self._lock:
            result = self._tracker.check(now)
            for top in result.settled:
                self._known[top] = None
        for top in result.vanished:
            log.info("intake: %s was deleted before it settled; dropped", top)
        done: list[Path] = []
        for top in result.settled:
            reason = _refusal(top)
            if reason is not None:
                if reason:
                    self.refusals.report(top, reason)
                with self._lock:
                    self._known.pop(top, None)
                continue
            log.info("intake: %s settled; registering", top)
            try:
                self._register(top)
            except Exception:
                # Never lose a case to a passing error (database busy, share hiccup):
                # forget that it settled and try again after another quiet period.
                log.exception("intake: registering %s failed; will try again", top)
                with self._lock:
                    self._known.pop(top, None)
                    self._tracker.note(top, now)
                continue
            done.append(top)
        return done

    def next_check_in(self) -> float:
        """Seconds until :meth:`poll` may have something to do (next settle or rescan)."""
        now = self._clock()
        with self._lock:
            due = self._tracker.next_due_in(now)
        scan_in = self._scan_interval if self._next_scan is None else self._next_scan - now
        candidates = [max(0.0, scan_in)] + ([due] if due is not None else [])
        return min(candidates)

    def pending(self) -> list[Path]:
        """Directories seen but not settled yet."""
        with self._lock:
            return self._tracker.pending()


def _as_seen(answer: bool | Seen) -> Seen:
    if isinstance(answer, Seen):
        return answer
    return Seen.DONE if answer else Seen.NEW


def _signature(top: Path) -> tuple[int, int] | None:
    try:
        st = top.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _refusal(top: Path) -> str | None:
    """Why ``top`` is not a case now (``""``: silently), None if it may be; gone: ``""``."""
    try:
        mode = top.lstat().st_mode
    except OSError:
        return ""
    return refusal_reason(top.name, mode)
