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

from .config import Config, load_config
from .dblock import engine_lock, sqlite_file
from .engine import Reconciler, TickReport
from .engine.build import build_engine_parts
from .engine.retrieve_step import upload_exclusions
from .engine.runtime import HostRuntime, TransferProgress, utcnow
from .errors import CaseContentError, ConfigError
from .intake.scan import case_problem
from .notify import HookDispatcher
from .operations import cancel_case, fail_at_intake, read_case_log, retry_case
from .persistence import CaseRecord, GpuRecord, Store, TransitionRecord
from .persistence.host_health import HostHealthRecord, read_host_health
from .remote.job_log import DEFAULT_MAX_BYTES, LogChunk
from .statemachine import CaseState, GpuState
from .zombie_release import release_zombie

if TYPE_CHECKING:
    from .intake.watcher import Intake

__all__ = ["Communicator"]

log = logging.getLogger("mqi_communicator.service")

#: After a tick that changed something, tick again this soon (follow-up work waits).
_BUSY_INTERVAL_S = 0.5
#: An external stop event is checked at least this often while waiting.
_STOP_SLICE_S = 0.5


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
            self.reconciler = Reconciler(
                parts.store,
                parts.hosts,
                parts.gpus,
                policy=parts.policy,
                settings=parts.settings,
                clock=clock,
                backoff=parts.backoff,
                progress=progress,
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
        self.intake: Intake | None = None
        if watch:
            from .intake.watcher import Intake  # watchdog: only an engine watches

            self.intake = Intake(
                config.watch_dir,
                register=self.register,
                is_known=lambda p: self.store.find_case(str(p)) is not None,
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
        """One pass: register settled intake folders, then one reconcile tick.

        Raises:
            EngineLockedError: another engine runs on this SQLite database.
        """
        if self._lock is not None:
            self._lock.acquire()
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
        and wakes at once when intake registers a case. A tick that raises is logged and
        the loop goes on (``on_tick`` then gets None). Stopping happens between ticks only.

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
            self._loop(stopped, on_tick)
        finally:
            hooks.stop()

    def _loop(
        self,
        stopped: Callable[[], bool],
        on_tick: Callable[[TickReport | None], None] | None,
    ) -> None:
        while not stopped():
            report: TickReport | None
            try:
                report = self.tick()
            except Exception:
                # The service must outlive a bad tick (database hiccup, a bug in one step):
                # log it in full and try again after the normal interval.
                log.exception("tick failed; trying again in %.1f s", self._poll_interval)
                report = None
            if on_tick is not None:
                on_tick(report)
            busy = report is not None and report.busy
            self._wait(min(self._poll_interval, _BUSY_INTERVAL_S) if busy else None, stopped)

    def request_stop(self) -> None:
        """Ask :meth:`run_forever` to return after the current tick (signal-handler safe)."""
        self._stop.set()
        self._wake.set()

    @property
    def _poll_interval(self) -> float:
        return self.config.engine.poll_interval_s

    def _wait(self, seconds: float | None, stopped: Callable[[], bool]) -> None:
        """Sleep until the next tick is due, registering intake folders as they settle."""
        deadline = time.monotonic() + (self._poll_interval if seconds is None else seconds)
        while not stopped():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            timeout = min(remaining, _STOP_SLICE_S)
            if self.intake is not None:
                timeout = min(timeout, self.intake.next_check_in())
            self._wake.wait(max(timeout, 0.01))
            self._wake.clear()
            if self.intake is not None and not stopped() and self.intake.poll():
                return  # a new case: tick now, do not wait for the interval

    # -- cases -------------------------------------------------------------------------

    def register(self, path: str | Path) -> CaseRecord:
        """Register a case folder (idempotent: a known path returns its case unchanged).

        An empty or unreadable folder is registered and at once recorded as ``failed``
        with the reason, so it is never silently skipped.

        Raises:
            CaseContentError: ``path`` is not a directory.
        """
        folder = Path(path).absolute()
        existing = self.store.find_case(str(folder))
        if existing is not None:
            return existing
        if not folder.is_dir():
            raise CaseContentError(f"{folder}: not a directory; a case is a folder")
        problem = case_problem(folder, upload_exclusions(self.config.engine.results_subdir))
        now = self._clock()
        case, created = self.store.register_case(str(folder), now)
        if created and problem is not None:
            log.warning("case %s (%s) cannot run: %s", case.id, folder, problem)
            case = fail_at_intake(self.store, case.id, problem, now)
        elif created:
            log.info("case %s registered: %s", case.id, folder)
        self._wake.set()
        return case

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
        """Give a ``failed`` or ``cancelled`` case another attempt (attempt + 1).

        Raises:
            InvalidTransitionError: the case is not failed or cancelled.
        """
        case = retry_case(self.store, case_id, self._clock())
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
        """Stop intake, release the engine lock, close transports and the store."""
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
