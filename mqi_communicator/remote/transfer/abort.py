"""The transports' abort hook: a ``threading.Event`` the engine sets when it stops.

Transfers check it between chunks of their stream (``check_abort``), so a flowing
stream stops within one chunk (1 MiB). A stalled one (a full SSH window, a silent
peer) blocks in ``send``/``recv`` instead; :func:`close_on_abort` closes its channel
from a watcher thread, which unblocks the call, and the caller's next
``check_abort`` turns the resulting error into :class:`TransferAborted`.

An aborted transfer never moves anything into place: the rename is the last step of a
verified copy, and an upload's far side that sees EOF without the manifest trailer
removes its partial directory itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mqi_communicator.errors import TransferAborted

__all__ = ["WATCH_INTERVAL_S", "check_abort", "close_on_abort"]

#: How often a watcher looks at the abort event (the bound on a stalled stream's stop).
WATCH_INTERVAL_S = 0.1


def check_abort(abort: threading.Event | None, what: str) -> None:
    """Raise :class:`TransferAborted` when ``abort`` is set."""
    if abort is not None and abort.is_set():
        raise TransferAborted(f"{what}: aborted, the engine is stopping")


@contextmanager
def close_on_abort(abort: threading.Event | None, close: Callable[[], None]) -> Iterator[None]:
    """While active, ``close()`` is called (once) soon after ``abort`` is set."""
    if abort is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(WATCH_INTERVAL_S):
            if abort.is_set():
                close()
                return

    watcher = threading.Thread(target=watch, name="mqi-abort-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
