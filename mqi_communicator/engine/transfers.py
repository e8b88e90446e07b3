"""Transfers beside the tick: a bounded pool of threads for upload+submit and downloads.

An upload or download can take minutes (600 MB over a 100 Mbit/s link: about one);
run inside the tick it would hold up polling, timeouts, kills and claims on every
host. So the tick only *starts* them here and goes on; each runs in a thread of its
own (the work is I/O). A job holds a *link slot* while its bytes flow: at most
``max_parallel`` slots at once, and ``max_per_host`` uploads and as many downloads per
host (``engine.transfers``): a link carries each direction on its own, so a download
never keeps an upload from starting. An upload job gives its slot back as soon as its
bytes are sent and verified (:meth:`TransferPool.bytes_done`), and the run loop wakes
at once: the next case's upload starts while this one's submit runs, and the link does
not idle for the length of a submit. ``max_parallel: 0`` runs the jobs inline, in the
tick, as before the pool existed (a baseline for benchmarks, and what a bare
:class:`Reconciler` uses).

What stays exactly as safe as inline:

- The tick claims a GPU only when the pool has room for the host (nothing queues
  holding a GPU), and skips a case whose job is in flight, or ended after the tick read
  its rows (:meth:`TransferPool.snapshot`, :meth:`TransferPool.busy`): that row is stale,
  and acting on it would start a second download or a needless recovery.
- A job is the same step function the tick used to call (``submit_step``,
  ``retrieve_step``): intent before action (label and directory stored by the claim),
  each outcome applied in one store transaction with the attempt/label compare-and-set,
  and the case's lease (engines sharing a database) taken by the claim or
  ``take_over`` and renewed by ``LeaseKeeper`` while the job runs.
- A job gets its own :class:`TickContext` (its own report and ``now``, read when it
  starts); its report is folded into the next tick's.

Stopping: :meth:`TransferPool.stop` sets :attr:`TransferPool.abort`, the transports'
abort hook (:mod:`~mqi_communicator.remote.transfer.abort`): streams stop within a chunk, the
submit step sends nothing after it (:func:`check_stop`), and
:class:`~mqi_communicator.errors.TransferAborted` unwinds the job, leaving the case as a
crash at that point would (recovered on the next start). Threads are daemons: a job
still blocked after the grace cannot keep the process alive.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Literal

from ..errors import TransferAborted
from .runtime import TickContext, TickReport, TransferProgress, utcnow

__all__ = ["STOP_GRACE_S", "Direction", "TransferPool", "check_stop", "merge_report"]

log = logging.getLogger("mqi_communicator.engine")

#: How long a stop waits for aborted jobs to unwind (they need well under a second:
#: one chunk, a lease release). The documented bound of ``run``'s stop builds on it.
STOP_GRACE_S = 5.0

#: A step that runs beside the tick, given its own context.
Job = Callable[[TickContext], None]
#: Which way a job's bytes flow; each direction of a host's link has its own slots.
Direction = Literal["upload", "download"]


class TransferPool:
    """At most ``max_parallel`` link slots at once, ``max_per_host`` per host and direction.

    Args:
        max_parallel: Link slots at once over all hosts; 0 runs each job inline, in the tick.
        max_per_host: Slots per host for each direction (ignored inline).
        on_done: Called (from the job's thread) when a job gives its slot back or ends:
            the run loop ticks at once, as a freed slot may let a waiting case start.
        clock: Gives each job its ``now`` when it starts.
    """

    def __init__(
        self,
        max_parallel: int = 0,
        max_per_host: int = 1,
        *,
        on_done: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if max_parallel < 0 or max_per_host < 1:
            raise ValueError("max_parallel must be >= 0 and max_per_host >= 1")
        self.max_parallel = max_parallel
        self.max_per_host = max_per_host
        #: The transports' abort hook; set by :meth:`stop`.
        self.abort = threading.Event()
        #: Set whenever a job ends (the run loop clears it when it ticks again).
        self.finished = threading.Event()
        self._on_done = on_done
        self._clock = clock
        self._cond = threading.Condition()
        self._jobs: dict[int, str] = {}  # case id -> host, while its job runs
        self._slots: dict[int, tuple[str, Direction]] = {}  # jobs whose bytes still flow
        #: Cases whose job ended since the last :meth:`snapshot` (their rows changed).
        self._ended: set[int] = set()
        self._reports: list[TickReport] = []
        self._progress_lock = threading.Lock()

    @property
    def inline(self) -> bool:
        """True when jobs run in the tick itself (``max_parallel`` 0)."""
        return self.max_parallel == 0

    def in_flight(self, case_id: int) -> bool:
        """True while a job of this engine works on ``case_id``."""
        with self._cond:
            return case_id in self._jobs

    def running(self) -> dict[int, str]:
        """The cases with a job in flight, and their hosts."""
        with self._cond:
            return dict(self._jobs)

    def snapshot(self) -> None:
        """Mark the moment the tick reads its rows (see :meth:`busy`)."""
        with self._cond:
            self._ended.clear()

    def busy(self, case_id: int) -> bool:
        """True while a job works on ``case_id``, or when one ended since :meth:`snapshot`.

        A row read before such a job ended no longer says what the case is; the next
        tick (woken by the job's end) reads it again.
        """
        with self._cond:
            return case_id in self._jobs or case_id in self._ended

    def has_room(self, host: str, direction: Direction = "upload") -> bool:
        """True when a job for ``host`` may start now (never once stopping)."""
        if self.abort.is_set():
            return False
        if self.inline:
            return True
        with self._cond:
            return self._room(host, direction)

    def _room(self, host: str, direction: Direction) -> bool:
        same_way = Counter(self._slots.values())
        return (
            len(self._slots) < self.max_parallel and same_way[(host, direction)] < self.max_per_host
        )

    def start(
        self,
        ctx: TickContext,
        case_id: int,
        host: str,
        job: Job,
        direction: Direction = "upload",
    ) -> bool:
        """Run ``job`` for ``case_id`` on ``host``: inline, or in a thread of the pool.

        Returns False, running nothing, when stopping, when the case already has a job,
        or when the pool has no room for ``host`` in ``direction``.
        """
        if self.abort.is_set():
            return False
        with self._cond:
            if case_id in self._jobs or not (self.inline or self._room(host, direction)):
                return False
            self._jobs[case_id] = host
            if not self.inline:
                self._slots[case_id] = (host, direction)
        if self.inline:
            try:
                _guarded(job, ctx, case_id, inline=True)
            finally:
                with self._cond:
                    del self._jobs[case_id]
                    self._cond.notify_all()
            return True
        job_ctx = replace(ctx, now=self._clock(), report=TickReport(), progress=self._progress(ctx))
        thread = threading.Thread(
            target=self._run,
            args=(job, job_ctx, case_id),
            name=f"mqi-transfer-case-{case_id}",
            daemon=True,
        )
        thread.start()
        return True

    def bytes_done(self, case_id: int) -> None:
        """The job of ``case_id`` no longer uses the link: its slot may start another.

        The case stays :meth:`busy` until the job ends (its submit still runs).
        """
        with self._cond:
            freed = self._slots.pop(case_id, None) is not None
            self._cond.notify_all()
        if freed:
            self._wake()

    def _wake(self) -> None:
        self.finished.set()
        if self._on_done is not None:
            self._on_done()

    def _run(self, job: Job, ctx: TickContext, case_id: int) -> None:
        try:
            _guarded(job, ctx, case_id, inline=False)
        finally:
            with self._cond:
                del self._jobs[case_id]
                self._slots.pop(case_id, None)
                self._ended.add(case_id)
                self._reports.append(ctx.report)
                self._cond.notify_all()
            self._wake()

    def _progress(self, ctx: TickContext) -> TransferProgress | None:
        """The tick's progress callback, called by one job at a time."""
        inner = ctx.progress
        if inner is None:
            return None

        def progress(label: str, done: int, total: int) -> None:
            with self._progress_lock:
                inner(label, done, total)

        return progress

    def take_reports(self) -> list[TickReport]:
        """The reports of jobs that ended since the last call."""
        with self._cond:
            reports, self._reports = self._reports, []
        return reports

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job runs (at most ``timeout`` s); True when none runs."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs, timeout)

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """Abort every job and wait up to ``grace_s`` for them; True when all ended."""
        self.abort.set()
        idle = self.wait_idle(grace_s)
        if not idle:
            log.warning(
                "transfers of cases %s did not end within %.1f s of the stop; left to the "
                "next start's recovery",
                sorted(self.running()),
                grace_s,
            )
        return idle

    def resume(self) -> None:
        """Accept jobs again after a :meth:`stop` (a new run of the same engine)."""
        self.abort.clear()


def _guarded(job: Job, ctx: TickContext, case_id: int, *, inline: bool) -> None:
    try:
        job(ctx)
    except TransferAborted as err:
        log.info("case %s: %s; the next start picks the case up", case_id, err)
    except Exception as err:
        if inline:
            raise  # as before the pool: the tick fails and the run loop logs it
        # A thread has nobody to raise to: log in full, and count it in the report.
        log.exception("case %s: transfer step failed", case_id)
        ctx.report.errors.append(f"case {case_id}: {type(err).__name__}: {err}")


def check_stop(ctx: TickContext, what: str) -> None:
    """Raise :class:`TransferAborted` once the engine is stopping: send nothing more."""
    if ctx.transfers is not None and ctx.transfers.abort.is_set():
        raise TransferAborted(f"{what}: not done, the engine is stopping")


def merge_report(into: TickReport, part: TickReport) -> None:
    """Add a job's report to a tick's."""
    into.claimed += part.claimed
    into.submitted += part.submitted
    into.transitions += part.transitions
    into.kills += part.kills
    into.retrieved += part.retrieved
    into.stale += part.stale
    into.errors.extend(part.errors)
    for host in part.unreachable_hosts:
        if host not in into.unreachable_hosts:
            into.unreachable_hosts.append(host)
