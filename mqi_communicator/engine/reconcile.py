"""The reconciler: observe -> decide -> act -> persist, once per tick.

Observation is batched: ONE ``Scheduler.poll`` per host per tick covers every running
case and every zombie GPU on that host (aiida's JobsList, submitit's watcher). The
decisions come from :mod:`mqi_communicator.statemachine.decide`; every state change
goes through the store's single-transaction ``apply``/``claim``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial

from ..errors import HostUnreachableError, MqiError, SchedulerUnavailableError
from ..persistence import CaseRecord, GpuRecord, Store
from ..persistence.host_health import read_host_health
from ..remote.protocol import JobRef
from ..statemachine.decide import (
    JobObservation,
    Policy,
    decide_running,
    decide_zombie,
)
from ..statemachine.states import CaseState, GpuState
from .backoff import Backoff, HostHealth
from .fault import guard_case, guard_gpu, is_due, poll_due, poll_failed, poll_worked
from .health_record import HealthRecorder
from .kills import act_on_case, act_on_gpu, check_stray, observation, unreachable
from .lease import new_engine_id
from .leftovers import leftover_min_age_s
from .legacy_jobs import claimable_gpus, resolve_hosts
from .remote_leftovers import RemoteLeftovers
from .retention import RetentionSweeper
from .retrieve_step import retrieve
from .runtime import (
    EngineSettings,
    GpuRuntime,
    HostRuntime,
    TickContext,
    TickReport,
    TransferProgress,
    case_ref,
    case_view,
    gpu_ref,
    gpu_view,
    utcnow,
)
from .submit_step import recover_submitting, start_waiting_cases
from .transfers import TransferPool, gpu_key, merge_report, run_beside

__all__ = ["Reconciler"]

log = logging.getLogger("mqi_communicator.engine")

_LIVE = (CaseState.SUBMITTED, CaseState.SUBMITTING, CaseState.RUNNING, CaseState.RETRIEVING)


class Reconciler:
    """Drives every live case and zombie GPU one step forward per :meth:`tick`.

    The reconciler keeps no state that matters across a crash: build a new one on the
    same database and it carries on from the rows alone.
    """

    def __init__(
        self,
        store: Store,
        hosts: Mapping[str, HostRuntime],
        gpus: Sequence[GpuRuntime],
        *,
        policy: Policy,
        settings: EngineSettings,
        clock: Callable[[], datetime] = utcnow,
        backoff: Backoff | None = None,
        progress: TransferProgress | None = None,
        transfers: TransferPool | None = None,
    ) -> None:
        self.store = store
        self.hosts = dict(hosts)
        self.gpus = {g.name: g for g in gpus}
        self.policy = policy
        self.settings = settings
        self.clock = clock
        self.health = HostHealth(backoff or Backoff(), on_change=HealthRecorder(store, clock))
        self.progress = progress
        #: Where uploads+submits and downloads run (default: inline, in the tick).
        self.transfers = transfers if transfers is not None else TransferPool(clock=clock)
        #: Who this engine is in the cases' leases (one id per engine object).
        self.engine_id = new_engine_id()
        self._retention = RetentionSweeper(
            settings.remote_retention, grace_s=settings.remote_retention_grace_s
        )
        #: Our uploads' crash leftovers on each SSH host, swept once it answers and the
        #: cases caught mid-upload by the crash are recovered.
        self.leftovers = RemoteLeftovers(
            hosts,
            min_age_s=leftover_min_age_s(
                exclusive=settings.exclusive, transfer_timeout_s=settings.transfer_timeout_s
            ),
            recovering=store.list_cases([CaseState.SUBMITTING]),
        )
        store.sync_gpus([(g.name, g.host) for g in gpus], clock())
        resolve_hosts(store, gpus, clock())  # jobs adopted from the original system

    def tick(self) -> TickReport:
        """One pass over every live case and zombie GPU."""
        rows = self.store.list_gpus()
        ctx = TickContext(
            store=self.store,
            hosts=self.hosts,
            # A legacy job still on a GPU slot keeps that slot's configured twin unclaimed.
            gpus=claimable_gpus(self.gpus, rows),
            policy=self.policy,
            settings=self.settings,
            health=self.health,
            now=self.clock(),
            report=TickReport(),
            progress=self.progress,
            engine_id=self.engine_id,
            transfers=self.transfers,
        )
        for part in self.transfers.take_reports():  # jobs that ended since the last tick
            merge_report(ctx.report, part)
        self.transfers.snapshot()  # a job ending after this line makes its case's row stale
        cases = self.store.list_cases(_LIVE)
        # A zombie whose checks back off after local errors waits (engine/fault.py).
        zombies = [g for g in rows if g.status is GpuState.ZOMBIE and is_due(g, ctx.now)]
        running = [c for c in cases if c.status is CaseState.RUNNING]
        observed = self._observe(ctx, running, zombies)

        # Each case and GPU runs inside its own fault boundary (engine/fault.py). A kill
        # or lookup in flight (engine/kills.py) holds its case and GPU: the tick acts on
        # neither until it returns, so the GPU stays held whatever a poll says.
        pool = self.transfers
        for case in running:
            if pool.busy(case.id):  # a kill runs, or ended after the rows were read
                continue
            obs = observed.get(("case", case.id)) or unreachable(ctx)
            guard_case(ctx, case, "observing", partial(_act_running, ctx, obs))
        for gpu in zombies:
            # Not observed (host down, poll failed, or its check runs beside the tick):
            # nothing to decide, nothing proven. A re-kill in flight: when it returns.
            seen = observed.get(("gpu", gpu.name))
            if seen is not None and not pool.busy(gpu_key(gpu.name)):
                guard_gpu(ctx, gpu, "checking the zombie", partial(_act_zombie, ctx, gpu, seen))
        for case in cases:
            if case.status is CaseState.SUBMITTING:
                guard_case(ctx, case, "recovering", partial(recover_submitting, ctx))
            elif (
                case.status is CaseState.RETRIEVING
                and is_due(case, ctx.now)
                and not pool.busy(case.id)
            ):
                # Busy: its download runs or just ended; no room on its host: a later tick.
                pool.start(ctx, case.id, case.host or "", partial(_retrieve, case), lane="download")
        waiting = [c for c in cases if c.status is CaseState.SUBMITTED]
        start_waiting_cases(ctx, waiting)
        self._retention.sweep(ctx)  # ended cases' remote folders, per remote_retention
        self.leftovers.sweep(ctx)  # crash leftovers of uploads (engine/remote_leftovers.py)
        return ctx.report

    def _observe(
        self, ctx: TickContext, running: list[CaseRecord], zombies: list[GpuRecord]
    ) -> dict[tuple[str, object], JobObservation]:
        """One poll per host; a zombie with no known job id is checked beside the tick."""
        wanted: dict[str, list[tuple[tuple[str, object], JobRef]]] = defaultdict(list)
        for case in running:
            if case.host in self.hosts:
                wanted[str(case.host)].append((("case", case.id), case_ref(case)))
        for gpu in zombies:
            host = ctx.host_of_gpu(gpu)
            # A legacy job is matched by id + label, or by label alone when no id is known.
            if host is not None and (gpu.job_id or gpu.job_origin == "legacy"):
                wanted[host.name].append((("gpu", gpu.name), gpu_ref(gpu)))
            elif host is not None and gpu.job_label and not ctx.health.is_down(host.name, ctx.now):
                # No id known: its lookup and poll run beside the tick (engine/kills.py).
                run_beside(ctx, gpu_key(gpu.name), host.name, partial(check_stray, gpu, host))
        out: dict[tuple[str, object], JobObservation] = {}
        # A poll's local errors live in host_health (one home; a restart honours them).
        polls = self.store.read(read_host_health) if wanted else {}
        for host_name, items in wanted.items():
            rec = polls.get(host_name)
            if ctx.health.is_down(host_name, ctx.now) or not poll_due(rec, ctx.now):
                continue
            refs = [ref for _, ref in items]
            try:
                statuses = self.hosts[host_name].scheduler.poll(refs)
            except (HostUnreachableError, SchedulerUnavailableError) as err:
                ctx.host_down(host_name, err)
                continue
            except MqiError as err:
                log.warning("poll on %s failed: %s", host_name, err)
                continue
            except Exception as err:  # a bug in an adapter: this host waits, others go on
                poll_failed(ctx, host_name, rec, err)
                continue
            self.health.succeeded(host_name)
            if rec is not None and rec.poll_failures:
                poll_worked(ctx, host_name)
            for key, ref in items:
                out[key] = observation(ctx, statuses.get(ref))
        return out


def _retrieve(case: CaseRecord, ctx: TickContext) -> None:
    # The pool gives the job its own context; the fault boundary stays per case.
    guard_case(ctx, case, "retrieving", partial(retrieve, ctx))


def _act_running(ctx: TickContext, obs: JobObservation, case: CaseRecord) -> None:
    act_on_case(ctx, case, decide_running(case_view(case), obs, ctx.now, ctx.policy))


def _act_zombie(ctx: TickContext, gpu: GpuRecord, obs: JobObservation) -> None:
    act_on_gpu(ctx, gpu, decide_zombie(gpu_view(gpu), obs))
