"""What the reconciler works with: live hosts and GPUs, settings, and one tick's context."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from ..persistence import CaseRecord, GpuRecord, Store, case_facts, gpu_facts
from ..remote.protocol import GpuBinding, JobRef, Scheduler, Transport
from ..statemachine.decide import Policy
from ..statemachine.guards import CaseFacts, GpuFacts
from .backoff import HostHealth

__all__ = [
    "EngineSettings",
    "GpuRuntime",
    "HostRuntime",
    "JobKey",
    "Lane",
    "TickContext",
    "TickReport",
    "Transfers",
    "case_ref",
    "case_view",
    "gpu_ref",
    "gpu_view",
    "utcnow",
]

log = logging.getLogger("mqi_communicator.engine")

#: Called as ``progress(case_label, bytes_done, bytes_total)`` during transfers.
TransferProgress = Callable[[str, int, int], None]
#: What a job beside the tick holds: a case id, or a GPU's key (engine/transfers.py).
JobKey = int | str
#: ``upload`` (+ its submit), ``download``: link slots per direction; ``action``: kills,
#: lookups; ``cleanup``: removals of ended cases' folders and leftovers (never ahead of a kill).
Lane = Literal["upload", "download", "action", "cleanup"]


def utcnow() -> datetime:
    """The default clock: aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class HostRuntime:
    """One configured host: how to reach it and which scheduler runs there."""

    name: str
    transport: Transport
    scheduler: Scheduler
    remote_base: str


@dataclass(frozen=True)
class GpuRuntime:
    """One configured GPU resource: its store name, host, and scheduler binding."""

    name: str
    host: str
    binding: GpuBinding


@dataclass(frozen=True)
class EngineSettings:
    """Knobs of the reconciler that are not decision policy."""

    command: Sequence[str]
    results_dir: Path
    results_subdir: str = "output"
    label_prefix: str = "mqic"
    env: Mapping[str, str] = field(default_factory=dict)
    #: True when this engine is the only one on its database (SQLite + lock file):
    #: then any ``submitting`` case it did not start itself is a crash leftover.
    exclusive: bool = True
    #: With several engines (PostgreSQL), a ``submitting`` case that holds NO lease is
    #: recovered by another engine only after this long without change. It must exceed
    #: the longest start step (upload + submit); the config derives or checks it.
    submit_grace: timedelta = timedelta(seconds=3660)
    transfer_timeout_s: float = 3600.0
    #: With several engines: a lease not renewed for this long (database clock) has
    #: expired and its case may be taken over. Renewed every ``lease_ttl_s / 3``.
    lease_ttl_s: float = 60.0
    #: ``engine.remote_retention`` (engine/retention.py). Hand-built settings touch no
    #: remote folder; the config's default is ``keep_failed``.
    remote_retention: str = "keep"
    remote_retention_grace_s: float = 600.0


@dataclass
class TickReport:
    """What one tick did, for logs and the CLI."""

    claimed: int = 0
    submitted: int = 0
    transitions: int = 0
    kills: int = 0
    retrieved: int = 0
    #: Outcomes dropped because the case had moved on to another attempt.
    stale: int = 0
    errors: list[str] = field(default_factory=list)
    unreachable_hosts: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """True when the tick changed something (the loop ticks again soon)."""
        return bool(self.claimed or self.submitted or self.transitions or self.retrieved)


class Transfers(Protocol):
    """What the steps use of the transfer pool (engine/transfers.py, which builds on this)."""

    #: Set once the engine is stopping: the transports' abort hook.
    abort: threading.Event

    def in_flight(self, key: JobKey) -> bool:
        """True while a job of this engine holds ``key`` (a case id or a GPU's key)."""
        ...

    def busy(self, key: JobKey) -> bool:
        """:meth:`in_flight`, or a job holding ``key`` ended since the tick read its rows."""
        ...

    def has_room(self, host: str, lane: Lane = "upload") -> bool:
        """True when a job for ``host`` may start now."""
        ...

    def start(
        self,
        ctx: TickContext,
        key: JobKey | Iterable[JobKey],
        host: str,
        job: Callable[[TickContext], None],
        *,
        lane: Lane = "upload",
    ) -> bool:
        """Run ``job`` holding ``key`` (inline or beside the tick); False: not started."""
        ...

    def bytes_done(self, case_id: int) -> None:
        """The transfer of ``case_id`` no longer uses the link (its slot may start another)."""
        ...


@dataclass
class TickContext:
    """Everything one tick's steps share."""

    store: Store
    hosts: Mapping[str, HostRuntime]
    gpus: Mapping[str, GpuRuntime]
    policy: Policy
    settings: EngineSettings
    health: HostHealth
    now: datetime
    report: TickReport
    progress: TransferProgress | None = None
    #: This engine's lease owner id (see :func:`~mqi_communicator.engine.lease.new_engine_id`).
    engine_id: str = "engine"
    #: Where transfers run (:class:`~.transfers.TransferPool`); None: inline, unabortable.
    transfers: Transfers | None = None
    #: The keys the job running in this context holds (empty in the tick itself).
    held: frozenset[JobKey] = frozenset()

    @property
    def abort(self) -> threading.Event | None:
        """The transports' abort hook: set once the engine is stopping."""
        return self.transfers.abort if self.transfers is not None else None

    def host_of_case(self, case: CaseRecord) -> HostRuntime | None:
        """The runtime of the host the case's job lives on (None if unconfigured)."""
        return self.hosts.get(case.host) if case.host else None

    def host_of_gpu(self, gpu: GpuRecord) -> HostRuntime | None:
        """The runtime of the host a GPU belongs to (None if unconfigured).

        A legacy job's host is the one resolved for its Pueue group (engine/legacy_jobs.py)
        and nothing else: a same-named GPU on another host would observe a stranger.
        """
        if gpu.job_origin == "legacy":
            return self.hosts.get(gpu.host) if gpu.host else None
        rt = self.gpus.get(gpu.name)
        name = rt.host if rt else gpu.host
        return self.hosts.get(name) if name else None

    def host_down(self, host: str, err: Exception) -> None:
        """Record that ``host`` could not be reached."""
        delay = self.health.failed(host, self.now, str(err))
        if host not in self.report.unreachable_hosts:
            self.report.unreachable_hosts.append(host)
        log.warning("host %s unreachable (%s); next try in %s", host, err, delay)


def case_view(case: CaseRecord) -> CaseFacts:
    """The decision-relevant facts of a case row."""
    return case_facts(case)


def gpu_view(gpu: GpuRecord) -> GpuFacts:
    """The decision-relevant facts of a GPU row."""
    return gpu_facts(gpu)


def case_ref(case: CaseRecord) -> JobRef:
    """The scheduler reference of a case's job (a legacy job: its Pueue group too)."""
    legacy = case.job_origin == "legacy"
    return JobRef(
        job_id=case.job_id or "",
        label=case.label or "",
        remote_dir=case.remote_dir or "",
        token=case.attempt_token,
        legacy=legacy,
        # An adopted GPU is named by its legacy Pueue group (migrations/legacy_adoption.py).
        group=case.gpu_name if legacy else None,
    )


def gpu_ref(gpu: GpuRecord) -> JobRef:
    """The scheduler reference of the stray job on a zombie GPU."""
    return JobRef(
        job_id=gpu.job_id or "",
        label=gpu.job_label or "",
        remote_dir=gpu.job_dir or "",
        token=gpu.job_token,
        legacy=gpu.job_origin == "legacy",
        group=gpu.name if gpu.job_origin == "legacy" else None,
    )
