"""The library API: :class:`Communicator` does everything the CLI does, without the CLI.

A communicator owns one store, the hosts and GPUs of its config, a reconciler, and
(unless ``watch=False``) the intake of the watch folder. Queries and operator actions
(cancel, retry, GPU offline) are plain store transactions, safe while an engine runs in
another process; :meth:`Communicator.tick` and :meth:`Communicator.run_forever` are the
engine, and on SQLite take the one-engine lock first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import registration
from .config import Config, load_config
from .dblock import engine_lock, sqlite_file
from .engine import Reconciler, TickReport
from .engine.build import build_engine_parts
from .engine.leftovers import clean_at_start
from .engine.retry_retrieval import retry_case
from .engine.runtime import HostRuntime, TransferProgress, utcnow
from .engine.transfers import TransferPool, merge_report
from .errors import (
    ConfigError,
)
from .intake.tracker import Seen
from .notify import HookDispatcher
from .operations import cancel_case, read_case_log
from .persistence import CaseRecord, GpuRecord, Store, TransitionRecord
from .persistence.host_health import HostHealthRecord, read_host_health
from .remote.job.log import DEFAULT_MAX_BYTES, LogChunk
from .run_loop import run_loop
from .statemachine import CaseState, GpuState
from .zombie_release import release_zombie

if TYPE_CHECKING:
    from .intake.watcher import Intake

__all__ = ["Communicator"]

log = logging.getLogger("mqi_communicator.service")


class Communicator:
    """The communicator service as a library object.

    Args:
        config: The validated configuration.
        clock: The engine's clock (aware UTC); tests pass a controllable one.
        progress: Called as ``progress(label, bytes_done, bytes_total)`` during transfers.
        hosts: Pre-built host runtimes (tests inject them); else built from ``config``.
        store: An open store to use (not closed by :meth:`close`); else opened from
            ``config.database_url``.
        watch: Run the intake of ``config.watch_dir`` (False: register cases yourself).
        create_db: Create a SQLite database file that does not exist yet (schema at
            head). Other databases must be prepared with ``mqi-communicator db upgrade``.

    Raises:
        SchemaMismatchError: the database schema is not at this code's revision.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        progress: TransferProgress | None = None,
        hosts: Mapping[str, HostRuntime] | None = None,
        store: Store | None = None,
        watch: bool = True,
        create_db: bool = True,
    ) -> None:
        self.config = config
        self._clock = clock
        self._owns_store = store is None
        if store is None:
            if create_db:
                _create_sqlite_if_missing(config.database_url)
            store = Store.open(config.database_url)
        try:
            if hosts is not None:
                missing = sorted({g.host for g in config.gpus} - set(hosts))
                if missing:
                    raise ConfigError(
                        f"hosts given to Communicator lack {', '.join(missing)}, "
                        "which the config's GPUs use"
                    )
            parts = build_engine_parts(
                config, store=store, hosts=dict(hosts) if hosts is not None else None
            )
            self.store = parts.store
            self.hosts = parts.hosts
            limits = config.engine.transfers
            #: Uploads+submits and downloads beside the tick (``engine.transfers``).
            self.transfers = TransferPool(
                limits.max_parallel,
                limits.max_per_host,
                on_done=lambda: self._wake.set(),
                clock=clock,
            )
            self.reconciler = Reconciler(
                parts.store,
                parts.hosts,
                parts.gpus,
                policy=parts.policy,
                settings=parts.settings,
                clock=clock,
                backoff=parts.backoff,
                progress=progress,
                transfers=self.transfers,
            )
        except BaseException:
            if self._owns_store:
                store.close()
            raise
        self._owns_hosts = hosts is None
        self._wake = threading.Event()
        self._stop = threading.Event()
        # SQLite: one engine per file; PostgreSQL: a shared lock that `db downgrade` waits out.
        self._lock = engine_lock(config.database_url)
        self._started = False
        self.intake: Intake | None = None
        if watch:
            from .intake.watcher import Intake  # watchdog: only an engine watches

            self.intake = Intake(
                config.watch_dir,
                register=self.register,
                is_known=self._intake_seen,
                quiescence_s=config.intake.quiescence_s,
                ready_marker=config.intake.ready_marker,
                scan_interval_s=config.intake.scan_interval_s,
                wake=self._wake,
            )

    @classmethod
    def from_config_file(cls, path: str | Path, **kwargs: Any) -> Communicator:
        """Load ``path`` (see :func:`~mqi_communicator.config.load_config`) and build one."""
        return cls(load_config(path), **kwargs)

    # -- the engine --------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass: register settled intake folders, one reconcile tick, its transfers.

        The transfers the tick starts run in the pool as under :meth:`run_forever`, and
        this call waits for them to end, so one call is one whole step (``run --once``).

        Raises:
            EngineLockedError: another engine runs on this SQLite database.
        """
        self.transfers.resume()
        report = self._tick()
        self.transfers.wait_idle()
        for part in self.transfers.take_reports():
            merge_report(report, part)
        return report

    def _tick(self) -> TickReport:
        if self._lock is not None:
            self._lock.acquire()
        if not self._started:  # our crash leftovers, once we are the engine (leftovers.py)
            self._started = True
            clean_at_start(self.config, exclusive=self._lock is not None, now=time.time())
        if self.intake is not None:
            self.intake.start()
            self.intake.poll()
        return self.reconciler.tick()

    def run_forever(
        self,
        stop: threading.Event | None = None,
        on_tick: Callable[[TickReport | None], None] | None = None,
    ) -> None:
        """Tick until ``stop`` is set (or :meth:`request_stop` is called).

        Between ticks it waits up to ``engine.poll_interval_s`` (less after a busy tick),
        and wakes at once when intake registers a case or a transfer ends. A tick that
        raises is logged and the loop goes on (``on_tick`` then gets None). Transfers run
        beside the ticks (``engine.transfers``); a stop aborts them at once and returns
        within a few seconds (:mod:`~mqi_communicator.run_loop`).

        Raises:
            EngineLockedError: another engine runs on this SQLite database.
        """
        if self._lock is not None:
            self._lock.acquire()  # refuse before doing anything
        self._stop.clear()

        def stopped() -> bool:
            return self._stop.is_set() or (stop is not None and stop.is_set())

        # Hooks are delivered beside the loop, never in it (a hanging hook cannot stall).
        hooks = HookDispatcher(self.store, self.config.hooks, clock=self._clock)
        hooks.start()
        try:
            run_loop(
                tick=self._tick,
                stopped=stopped,
                wake=self._wake,
                intake=self.intake,
                poll_interval_s=self.config.engine.poll_interval_s,
                transfers=self.transfers,
                on_tick=on_tick,
            )
        finally:
            hooks.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run_forever` to stop (signal-handler safe); transfers are aborted."""
        self._stop.set()
        self._wake.set()

    # -- cases -------------------------------------------------------------------------

    def _intake_seen(self, folder: Path) -> Seen:
        return registration.intake_seen(self.store, folder, self._clock())

    def register(self, path: str | Path) -> CaseRecord:
        """Register a case folder; idempotent (see :func:`.registration.register_folder`).

        A path whose latest case is live, or ended with the same content, returns that
        case; a folder dropped again after its case ended becomes a new case. An empty
        or unreadable folder is registered and at once recorded as ``failed``.

        Raises:
            CaseContentError: ``path`` is not a directory.
        """
        case = registration.register_folder(
            self.store,
            Path(path),
            self._clock,
            results_subdir=self.config.engine.results_subdir,
            notices=self.intake.refusals if self.intake is not None else None,
        )
        self._wake.set()
        return case

    def intake_notices(self) -> list[str]:
        """Lines about refused intake entries not shown yet (each once; for ``run``)."""
        return self.intake.refusals.drain() if self.intake is not None else []

    def cases(self, statuses: Iterable[CaseState] | None = None) -> list[CaseRecord]:
        """Every case (or those in ``statuses``), in id order."""
        return self.store.list_cases(statuses)

    def case(self, case_id: int) -> CaseRecord:
        """One case (:class:`~mqi_communicator.errors.NotFoundError` if none)."""
        return self.store.get_case(case_id)

    def history(
        self, case_id: int | None = None, gpu_name: str | None = None, limit: int | None = None
    ) -> list[TransitionRecord]:
        """Transition history, oldest first, optionally of one case or one GPU."""
        return self.store.history(case_id=case_id, gpu_name=gpu_name, limit=limit)

    def gpus(self) -> list[GpuRecord]:
        """Every GPU resource."""
        return self.store.list_gpus()

    def host_health(self) -> dict[str, HostHealthRecord]:
        """Each host's health as the engine last recorded it (hosts never contacted: absent).

        Read from the database, so it shows the health an engine in another process saw.
        """
        return self.store.read(read_host_health)

    def summary(self) -> dict[str, Any]:
        """Counts per case and GPU state (all states, zeros included), zombies, hosts down."""
        case_counts = self.store.count_by_status()
        gpus = self.store.list_gpus()
        gpu_counts = Counter(g.status for g in gpus)
        # From the database: the engine may run in another process.
        health = self.host_health()
        return {
            "cases": {s.value: case_counts.get(s, 0) for s in CaseState},
            "gpus": {s.value: gpu_counts.get(s, 0) for s in GpuState},
            "zombies": [g.name for g in gpus if g.status is GpuState.ZOMBIE],
            "hosts_down": {
                h: rec.last_error for h, rec in health.items() if not rec.up and h in self.hosts
            },
            "intake_pending": [str(p) for p in self.intake.pending()] if self.intake else [],
        }

    def cancel(self, case_id: int) -> CaseRecord:
        """Cancel a case.

        A waiting (``submitted``) or ``retrieving`` case is cancelled at once. A
        ``submitting``/``running`` one is flagged; the engine kills its job and frees the
        GPU only on evidence the job is gone (else the GPU becomes ``zombie``).

        Raises:
            InvalidTransitionError: the case already ended.
        """
        case = cancel_case(self.store, case_id, self._clock())
        self._wake.set()
        return case

    def retry(self, case_id: int) -> CaseRecord:
        """Give a ``failed`` or ``cancelled`` case another try.

        A case that failed in retrieval whose results are still on its host is
        downloaded again (``retrieving``, same attempt, no new job); any other runs
        again (``submitted``, attempt + 1). The audit row's detail says which
        (:mod:`mqi_communicator.engine.retry_retrieval`).

        Raises:
            InvalidTransitionError: the case is not failed or cancelled, or its folder
                was dropped again since (a newer case holds that content: retry it).
        """
        registration.refuse_superseded(self.store, case_id)
        subdir = self.config.engine.results_subdir
        case = retry_case(self.store, self.hosts, subdir, case_id, self._clock())
        self._wake.set()
        return case

    def release_zombie(
        self, name: str, *, reason: str, confirm_job_gone: bool, actor: str | None = None
    ) -> GpuRecord:
        """Free a zombie GPU on an operator's word that its job is gone, audited.

        For a zombie whose job can no longer be observed (host reinstalled or retired).
        The audit row carries ``operator_attested`` evidence: who (``actor``, default
        ``<OS user>@<this host>``), when, and why (``reason``). Only zombies qualify.

        Raises:
            ValueError: ``confirm_job_gone`` is not True or ``reason`` is blank; the
                message says what to check on the host first.
            InvalidTransitionError: the GPU is not a zombie.
            NotFoundError: no GPU ``name``.
        """
        gpu = release_zombie(
            self.store,
            name,
            self._clock(),
            reason=reason,
            confirm_job_gone=confirm_job_gone,
            actor=actor,
        )
        self._wake.set()
        return gpu

    def set_gpu_offline(self, name: str, offline: bool) -> GpuRecord:
        """Take a GPU out of the pool (idle: now; busy: once its job ended) or bring it back."""
        gpu = self.store.set_gpu_offline(name, self._clock(), offline)
        self._wake.set()
        return gpu

    def job_log_tail(
        self,
        case_id: int,
        *,
        lines: int = 100,
        offset: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> LogChunk:
        """The job log of the case's current (or last) attempt, read over its host.

        Args:
            case_id: The case.
            lines: Without ``offset``: the last this many lines.
            offset: Read the bytes from this offset on instead (``LogChunk.end`` of the
                previous read, to follow a growing log).
            max_bytes: At most this much per read.

        Raises:
            NotFoundError: no such case, or it has no job directory (not started yet).
            ConfigError: the case's host is no longer configured.
            HostUnreachableError: the host could not be asked.
        """
        return read_case_log(
            self.store, self.hosts, case_id, lines=lines, offset=offset, max_bytes=max_bytes
        )

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop intake and transfers, release the lock, close transports and the store."""
        self.transfers.stop()
        if self.intake is not None:
            self.intake.stop()
        if self._lock is not None:
            self._lock.release()
        if self._owns_hosts:
            for host in self.hosts.values():
                host.transport.close()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _create_sqlite_if_missing(database_url: str) -> None:
    """A SQLite file that does not exist yet is created at the schema head."""
    db = sqlite_file(database_url)
    if db is None or db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    log.info("creating the database %s", db)
    from .migrations.api import upgrade  # Alembic: only when a database is made

    upgrade(database_url)
