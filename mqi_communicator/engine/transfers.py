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

Kills and lookups (``scheduler.kill``, ``find_by_label``, the zombie checks) are
short remote commands, but over a link that hangs each one blocks for up to its
scheduler timeout. They run here too (:func:`run_beside`), in a lane of their own: they
never queue behind a transfer, and have the same limits, counted apart (at most
``max_per_host`` per host and ``max_parallel`` in all). A job holds keys: its case id
and/or ``gpu_key(name)`` of the GPU it acts on; a key is held by one job at a time (one
kill or lookup per case and per GPU), and the tick does not act on a case or GPU whose
key is held (a kill in flight keeps its GPU held; engine/reconcile.py).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from ..errors import TransferAborted
from .runtime import JobKey, Lane, TickContext, TickReport, TransferProgress, utcnow

__all__ = [
    "STOP_GRACE_S",
    "JobKey",
    "Lane",
    "TransferPool",
    "check_stop",
    "gpu_key",
    "merge_report",
    "run_beside",
]

log = logging.getLogger("mqi_communicator.engine")

#: How long a stop waits for aborted jobs to unwind (they need well under a second:
#: one chunk, a lease release). The documented bound of ``run``'s stop builds on it.
STOP_GRACE_S = 5.0

#: A step that runs beside the tick, given its own context.
Job = Callable[[TickContext], None]


def gpu_key(name: str | None) -> str:
    """The key of the GPU ``name`` in the pool (case ids are ints, so never equal)."""
    return f"gpu:{name}"


@dataclass(frozen=True)
class _Slot:
    keys: frozenset[JobKey]
    host: str
    lane: Lane


#: Lanes of remote commands, not transfers: they hold no link slot.
_SHORT: frozenset[Lane] = frozenset({"action", "cleanup"})


def _keys(key: JobKey | Iterable[JobKey]) -> frozenset[JobKey]:
    return frozenset((key,)) if isinstance(key, int | str) else frozenset(key)


def _name(keys: frozenset[JobKey]) -> str:
    """``case 5``, ``gpu:host/gpu0``, or both: how the log names a job."""
    return " ".join(sorted(f"case {k}" if isinstance(k, int) else k for k in keys))


class TransferPool:
    """At most ``max_parallel`` link slots at once, ``max_per_host`` per host and direction.

    Args:
        max_parallel: Link slots at once over all hosts; 0 runs each job inline, in the tick.
        max_per_host: Slots per host for each direction (ignored inline).
        on_done: Called (from the job's thread) when a job gives its slot back or ends:
            the run loop ticks at once, as a freed slot may let a waiting case start.
        clock: Gives each job its ``now`` when it starts.
        spawn: Runs ``(work, name)`` beside the caller (default: a daemon thread). A
            test may defer ``work`` to run it at a moment it chooses.
    """

    def __init__(
        self,
        max_parallel: int = 0,
        max_per_host: int = 1,
        *,
        on_done: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        spawn: Callable[[Callable[[], None], str], None] | None = None,
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
        self._spawn = spawn or _thread
        self._cond = threading.Condition()
        self._jobs: dict[int, _Slot] = {}  # by a serial number
        self._serial = 0
        #: Transfer jobs whose bytes are done (:meth:`bytes_done`): no link slot, keys held.
        self._freed: set[int] = set()
        #: Keys whose job ended since the last :meth:`snapshot` (their rows changed).
        self._ended: set[JobKey] = set()
        self._reports: list[TickReport] = []
        self._progress_lock = threading.Lock()

    @property
    def inline(self) -> bool:
        """True when jobs run in the tick itself (``max_parallel`` 0)."""
        return self.max_parallel == 0

    def in_flight(self, key: JobKey) -> bool:
        """True while a job of this engine holds ``key`` (a case id, or a :func:`gpu_key`)."""
        with self._cond:
            return any(key in slot.keys for slot in self._jobs.values())

    def running(self) -> dict[JobKey, str]:
        """The keys held by jobs in flight, and their hosts."""
        with self._cond:
            return {key: slot.host for slot in self._jobs.values() for key in slot.keys}

    def snapshot(self) -> None:
        """Mark the moment the tick reads its rows (see :meth:`busy`)."""
        with self._cond:
            self._ended.clear()

    def busy(self, key: JobKey) -> bool:
        """True while a job holds ``key``, or when one that held it ended since :meth:`snapshot`.

        A row read before such a job ended no longer says what the case (or GPU) is; the
        next tick (woken by the job's end) reads it again.
        """
        with self._cond:
            return key in self._ended or any(key in slot.keys for slot in self._jobs.values())

    def has_room(self, host: str, lane: Lane = "upload") -> bool:
        """True when a job for ``host`` may start now (never once stopping)."""
        if self.abort.is_set():
            return False
        if self.inline:
            return True
        with self._cond:
            return self._room(host, lane)

    def _room(self, host: str, lane: Lane) -> bool:
        if lane in _SHORT:  # kills and lookups, or cleanups: each lane its own count
            mine = [s.host for s in self._jobs.values() if s.lane == lane]
            return len(mine) < self.max_parallel and Counter(mine)[host] < self.max_per_host
        # Link slots: every transfer whose bytes still flow, per host and direction.
        flowing = [
            (s.host, s.lane)
            for n, s in self._jobs.items()
            if s.lane not in _SHORT and n not in self._freed
        ]
        return len(flowing) < self.max_parallel and Counter(flowing)[host, lane] < self.max_per_host

    def start(
        self,
        ctx: TickContext,
        key: JobKey | Iterable[JobKey],
        host: str,
        job: Job,
        *,
        lane: Lane = "upload",
    ) -> bool:
        """Run ``job``, holding ``key`` (one or several), on ``host``: inline or beside.

        Returns False, running nothing, when stopping, when a key is held by another
        job, or when the pool has no room for ``host`` in ``lane``.
        """
        if self.abort.is_set():
            return False
        keys = _keys(key)
        name = _name(keys)
        with self._cond:
            held = any(keys & slot.keys for slot in self._jobs.values())
            if held or not (self.inline or self._room(host, lane)):
                return False
            self._serial += 1
            serial = self._serial
            self._jobs[serial] = _Slot(keys, host, lane)
        if self.inline:
            try:
                _guarded(job, replace(ctx, held=ctx.held | keys), name, inline=True)
            finally:
                with self._cond:
                    del self._jobs[serial]
                    self._cond.notify_all()
            return True
        job_ctx = replace(
            ctx, now=self._clock(), report=TickReport(), progress=self._progress(ctx), held=keys
        )
        self._spawn(
            lambda: self._run(job, job_ctx, serial, name), f"mqi-{lane}-{name.replace(' ', '-')}"
        )
        return True

    def bytes_done(self, case_id: int) -> None:
        """The transfer of ``case_id`` no longer uses the link: its slot may start another.

        The case stays :meth:`busy` until the job ends (its submit still runs).
        """
        with self._cond:
            mine = {n for n, s in self._jobs.items() if case_id in s.keys and s.lane not in _SHORT}
            fresh = mine - self._freed
            self._freed |= fresh
            self._cond.notify_all()
        if fresh:
            self._wake()

    def _wake(self) -> None:
        self.finished.set()
        if self._on_done is not None:
            self._on_done()

    def _run(self, job: Job, ctx: TickContext, serial: int, name: str) -> None:
        try:
            _guarded(job, ctx, name, inline=False)
        finally:
            with self._cond:
                slot = self._jobs.pop(serial)
                self._freed.discard(serial)
                self._ended |= slot.keys
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
                "jobs on %s did not end within %.1f s of the stop; left to the "
                "next start's recovery",
                sorted(map(str, self.running())),
                grace_s,
            )
        return idle

    def resume(self) -> None:
        """Accept jobs again after a :meth:`stop` (a new run of the same engine)."""
        self.abort.clear()


def _thread(work: Callable[[], None], name: str) -> None:
    threading.Thread(target=work, name=name, daemon=True).start()


def _guarded(job: Job, ctx: TickContext, name: str, *, inline: bool) -> None:
    try:
        job(ctx)
    except TransferAborted as err:
        log.info("%s: %s; the next start picks it up", name, err)
    except Exception as err:
        if inline:
            raise  # as before the pool: the tick fails and the run loop logs it
        # A thread has nobody to raise to: log in full, and count it in the report.
        log.exception("%s: step beside the tick failed", name)
        ctx.report.errors.append(f"{name}: {type(err).__name__}: {err}")


def run_beside(
    ctx: TickContext,
    key: JobKey | Iterable[JobKey],
    host: str,
    job: Job,
    *,
    lane: Lane = "action",
) -> bool:
    """Run a kill or lookup (``job``) beside the tick, holding ``key``; False: not now.

    ``lane`` "cleanup" is for removals (retention, leftovers): counted apart from kills
    and lookups, so a slow ``rm`` never keeps a kill from starting.

    Inside a job that already holds every key (a zombie check that then kills), and
    without a pool, ``job`` runs at once. Nothing is sent once the engine is stopping:
    the intent recorded before this call makes the next start do it.
    """
    if ctx.abort is not None and ctx.abort.is_set():
        return False
    if ctx.transfers is None or _keys(key) <= ctx.held:
        job(ctx)
        return True
    return ctx.transfers.start(ctx, key, host, job, lane=lane)


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
