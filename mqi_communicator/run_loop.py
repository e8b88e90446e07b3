"""The engine's loop: tick, wait, tick; and a prompt stop (``Communicator.run_forever``).

Stopping (SIGTERM/SIGINT in ``run``, or the caller's event) takes a few seconds at most,
whatever is in flight:

- a watcher thread sees the stop within :data:`WATCH_S` and sets the transfer pool's
  abort event at once, even in the middle of a tick: streams stop within a chunk, no
  submit is sent after it, and nothing is claimed or started any more;
- the tick under way finishes its short remote commands (polls, kills: each bounded by
  its own timeout, milliseconds on a healthy host) and no new tick starts;
- the pool's jobs get :data:`~mqi_communicator.engine.transfers.STOP_GRACE_S` to unwind
  (their leases end); one still blocked after that is abandoned (a daemon thread), as
  a crash would abandon it. Every case is left as a crash at that point would leave it,
  and the next start recovers it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .engine.transfers import TransferPool

if TYPE_CHECKING:
    from .engine import TickReport
    from .intake.watcher import Intake

__all__ = ["BUSY_INTERVAL_S", "STOP_SLICE_S", "WATCH_S", "run_loop"]

log = logging.getLogger("mqi_communicator.service")

#: After a tick that changed something, tick again this soon (follow-up work waits).
BUSY_INTERVAL_S = 0.5
#: An external stop event is checked at least this often while waiting.
STOP_SLICE_S = 0.5
#: How often the stop watcher looks at the stop condition (abort latency).
WATCH_S = 0.1


def run_loop(
    *,
    tick: Callable[[], TickReport],
    stopped: Callable[[], bool],
    wake: threading.Event,
    intake: Intake | None,
    poll_interval_s: float,
    transfers: TransferPool,
    on_tick: Callable[[TickReport | None], None] | None = None,
) -> None:
    """Tick until ``stopped()``; then abort transfers and wait for them (bounded)."""
    transfers.resume()
    done = threading.Event()
    watcher = threading.Thread(
        target=_abort_on_stop, args=(stopped, transfers, wake, done), name="mqi-stop", daemon=True
    )
    watcher.start()
    try:
        while not stopped():
            report: TickReport | None
            try:
                report = tick()
            except Exception:
                # The service must outlive a bad tick (database hiccup, a bug in one step):
                # log it in full and try again after the normal interval.
                log.exception("tick failed; trying again in %.1f s", poll_interval_s)
                report = None
            if on_tick is not None:
                on_tick(report)
            busy = report is not None and report.busy
            wait = min(poll_interval_s, BUSY_INTERVAL_S) if busy else poll_interval_s
            _wait(wait, stopped, wake, intake, transfers)
    finally:
        done.set()
        transfers.stop()


def _abort_on_stop(
    stopped: Callable[[], bool],
    transfers: TransferPool,
    wake: threading.Event,
    done: threading.Event,
) -> None:
    while not done.wait(WATCH_S):
        if stopped():
            log.info("stopping: aborting transfers in flight")
            transfers.abort.set()
            wake.set()
            return


def _wait(
    seconds: float,
    stopped: Callable[[], bool],
    wake: threading.Event,
    intake: Intake | None,
    transfers: TransferPool,
) -> None:
    """Sleep until the next tick is due, registering intake folders as they settle.

    Ends early when a new case registers, or when a transfer job ended (a freed slot
    may let a waiting case start; its outcome may be followed up).
    """
    deadline = time.monotonic() + seconds
    while not stopped():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        timeout = min(remaining, STOP_SLICE_S)
        if intake is not None:
            timeout = min(timeout, intake.next_check_in())
        wake.wait(max(timeout, 0.01))
        wake.clear()
        if intake is not None and not stopped() and intake.poll():
            return  # a new case: tick now, do not wait for the interval
        if transfers.finished.is_set():
            transfers.finished.clear()
            return
