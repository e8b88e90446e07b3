"""The Hypothesis machine: the REAL Reconciler and Store (SQLite) against a simulated world.

Each example gets a fresh SQLite file, copied from a template upgraded once per session
with ``migrations.api.upgrade`` (running Alembic per example would dominate the run).
The clock is a :class:`~.sim_world.FakeClock`; the remote world is a
:class:`~.sim_world.SimWorld` that knows which of our jobs are alive and where.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from mqi_communicator.engine import EngineSettings, GpuRuntime, HostRuntime, Reconciler
from mqi_communicator.engine.transfers import TransferPool
from mqi_communicator.operations import cancel_case
from mqi_communicator.persistence import CaseRecord, GpuRecord, Store
from mqi_communicator.remote.protocol import GpuBinding
from mqi_communicator.statemachine import (
    TERMINAL_CASE_STATES,
    CaseState,
    CaseTrigger,
    Evidence,
    EvidenceKind,
)
from mqi_communicator.statemachine.jobs import JobState

from .sim_transport import SimTransport
from .sim_world import FORGED_EXIT, FakeClock, SimScheduler, SimulatedCrash, SimWorld
from .stateful_boundary import BoundaryRules
from .stateful_oracle import REACHED, OracleChecks
from .stateful_support import (
    BACKOFF,
    GPUS,
    HOST,
    MAX_CASES,
    POLICY,
    STATS,
    T0,
    refusals_noted,
    scratch_dir,
    template_db,
    traced,
)

__all__ = ["REACHED", "STATS", "SafetyMachine", "WarmSafetyMachine"]


class SafetyMachine(OracleChecks, BoundaryRules, RuleBasedStateMachine):
    """Rules are the world's moves, the operator's, the engine's ticks and crashes.

    The checks (invariant, coverage notes, liveness in teardown) are in OracleChecks;
    the rules for timeouts, stale outcomes and a second engine in BoundaryRules.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="mqi-safety-", dir=scratch_dir()))
        db = self.tmp / "state.db"
        shutil.copyfile(template_db(), db)
        self.url = f"sqlite:///{db}"
        self.world = SimWorld(self.tmp / "remote")
        self.world.remote_root.mkdir()
        self.clock = FakeClock(T0)
        self.case_ids: list[int] = []
        self.busy = False  # True while a rule or check runs: teardown skips liveness then
        self.dirty = True
        self.gpus: list[GpuRecord] = []
        self.trail: list[str] = []
        self.reached: set[str] = set()
        self.zombies_seen: set[str] = set()
        self.busy_offline: set[str] = set()
        self.superseded: dict[int, str] = {}
        #: Steps the guards refused (the engine logs and drops them): must stay empty.
        self.refused: list[str] = []
        #: Pooled engine (``engine_mode``): its kills and lookups wait here, with the
        #: time they were started, until ``beside_job_returns`` runs them.
        self.pooled = False
        self.pending: list[tuple[datetime, Callable[[], None]]] = []
        self._open()
        STATS["examples"] += 1

    def _open(self) -> None:
        self.store = Store.open(self.url)
        self.store.apply = refusals_noted(self.store.apply, self.refused)  # type: ignore[method-assign]
        host = HostRuntime(HOST, SimTransport(self.world), SimScheduler(self.world), "/work")
        gpus = [GpuRuntime(n, HOST, GpuBinding(n, pueue_group=n.split("/")[1])) for n in GPUS]
        self.reconciler = Reconciler(
            self.store,
            {HOST: host},
            gpus,
            policy=POLICY,
            # Not exclusive: the machine may start a second engine on the same database
            # (second_engine_mid_tick), which the design allows only where EVERY engine
            # shares it (PostgreSQL) and so holds leases. An exclusive engine (SQLite and
            # its lock file) is alone by design and takes none.
            settings=EngineSettings(
                command=("moqui",), results_dir=self.tmp / "results", exclusive=False
            ),
            clock=self.clock,
            backoff=BACKOFF,
            transfers=self._pool() if self.pooled else None,
        )

    def _pool(self) -> TransferPool:
        """The engine's real pool, whose kills and lookups return when a rule says so."""

        def spawn(work: Callable[[], None], name: str) -> None:
            if name.startswith("mqi-action"):
                self.pending.append((self.clock(), work))
            else:
                work()  # a transfer: done before the tick goes on, as inline

        return TransferPool(2, 2, clock=self.clock, spawn=spawn)

    def _crash(self) -> None:
        """Drop the reconciler and the store; rebuild both from the database file alone."""
        STATS["crashes"] += 1
        self.pending.clear()  # the process died: so did the calls in flight
        self.store.close()
        self._open()

    def drain_beside(self) -> None:
        """Every kill and lookup in flight returns (the healed world answers them)."""
        while self.pending:
            self.pending.pop(0)[1]()

    def _step(self) -> None:
        STATS["steps"] += 1
        self.busy = True
        self.dirty = True  # the database may change: the next check re-reads it

    # -- cases and the engine ------------------------------------------------------------
    @initialize(cases=st.integers(0, 2))
    def warm_start(self, cases: int) -> None:
        """Start cold, or with one or two cases already claimed and submitted."""
        self._warm(cases)

    @initialize(pooled=st.booleans())
    def engine_mode(self, pooled: bool) -> None:
        """Inline (``max_parallel`` 0), or pooled: kills and lookups run beside the tick."""
        if pooled:
            STATS["pooled"] += 1
            self.pooled = True
            self.store.close()
            self._open()  # a restart, between ticks

    @precondition(lambda self: bool(self.pending))
    @rule(
        pick=st.integers(0, 3),
        then=st.sampled_from(["returns", "returns", "host drops", "crash before", "crash after"]),
    )
    @traced
    def beside_job_returns(self, pick: int, then: str) -> None:
        """A kill or lookup started beside an earlier tick returns now (in any order); the
        host may drop at its call, or the engine die before or after it."""
        self._step()
        started, work = self.pending.pop(pick % len(self.pending))
        if self.clock() > started:
            self.reached.add("beside_job_after_ticks")
        w = self.world
        if then == "host drops":
            w.drop_countdown = 0
        elif then.startswith("crash"):
            w.crash_countdown, w.crash_after_effect = 0, then == "crash after"
        try:
            work()
        except SimulatedCrash:
            self._crash()
        finally:
            w.crash_countdown = w.drop_countdown = None
        self.busy = False

    def _warm(self, cases: int) -> None:
        for _ in range(cases):
            self.case_arrives()
        if cases:
            self.tick()

    @precondition(lambda self: len(self.case_ids) < MAX_CASES)
    @rule(forged=st.sampled_from([False, False, False, True]))
    @traced
    def case_arrives(self, forged: bool = False) -> None:
        """A case folder appears; a ``forged`` one carries its own ``.mqi/`` (exit 0)."""
        self._step()
        folder = self.tmp / "cases" / f"case{len(self.case_ids)}"
        folder.mkdir(parents=True)
        (folder / "plan.txt").write_text("beam 1\n", encoding="utf-8")
        if forged:
            (folder / FORGED_EXIT).parent.mkdir()
            (folder / FORGED_EXIT).write_text("0\n", encoding="utf-8")
            (folder / ".mqi" / "pgid").write_text("999999\n", encoding="utf-8")
        case, created = self.store.register_case(str(folder), self.clock())
        assert created
        self.case_ids.append(case.id)
        self.busy = False

    @rule()
    @traced
    def tick(self) -> None:
        self._step()
        self.clock.now += timedelta(seconds=5)
        self.reconciler.tick()
        self.busy = False

    @rule(calls=st.integers(-1, 4), after_effect=st.booleans())
    @traced
    def crash(self, calls: int, after_effect: bool) -> None:
        """The process dies between ticks (``calls`` -1), or in a tick before (or right
        after) its remote call number ``calls``; then everything is rebuilt from the DB."""
        self._step()
        if calls < 0:
            self._crash()
            self.busy = False
            return
        self.clock.now += timedelta(seconds=5)
        self.world.crash_countdown, self.world.crash_after_effect = calls, after_effect
        try:
            self.reconciler.tick()
        except SimulatedCrash:
            self._crash()
        finally:
            self.world.crash_countdown = None
        self.busy = False

    @rule(calls=st.integers(0, 3))
    @traced
    def network_drops_during_tick(self, calls: int) -> None:
        """The server becomes unreachable after ``calls`` remote calls of this tick."""
        self._step()
        self.clock.now += timedelta(seconds=5)
        self.world.drop_countdown = calls
        try:
            self.reconciler.tick()
        finally:
            self.world.drop_countdown = None
        self.busy = False

    # -- the environment -----------------------------------------------------------------
    # Few rules, many choices each: Hypothesis picks rules uniformly, and the engine's
    # ticks (tick, crash, network_drops_during_tick) must stay a large share of the steps
    # or the runs never get deep.
    @rule(
        change=st.sampled_from(
            [
                "network down",
                "network up",
                "submit ok",
                "submit ok",
                "submit: scheduler unavailable",
                "submit: rejected",
                "submit: times out after creating the job",
                "submit: cut off, still on its way",
                "cut-off submits land",
                "kills ignored",
                "kills work",
                "upload fails",
                "download fails",
                "transfers work",
                "clock steps back 90 s",
                "scheduler purges ended records",
                "stranger submits on gpu0",
                "stranger submits on gpu1",
                "probe goes blind (no writable /tmp)",
                "probe sees again",
            ]
        )
    )
    @traced
    def environment(self, change: str) -> None:
        """The server, its scheduler, the network and the clock change."""
        w = self.world
        modes = {
            "submit ok": "ok",
            "submit: scheduler unavailable": "unavailable",
            "submit: rejected": "rejected",
            "submit: times out after creating the job": "timeout_after_create",
            "submit: cut off, still on its way": "lost_in_flight",
        }
        if change in modes:
            w.submit_mode = modes[change]
        elif change.startswith("network"):
            w.reachable = change == "network up"
        elif change.startswith("kills"):
            w.kills_work = change == "kills work"
        elif change == "upload fails":
            w.upload_ok = False
        elif change == "download fails":
            w.download_ok = False
        elif change == "transfers work":
            w.upload_ok = w.download_ok = True
        elif change.startswith("probe"):
            w.blind = "blind" in change
        elif change == "clock steps back 90 s":
            self.clock.now -= timedelta(seconds=90)  # NTP on the control PC
        elif change == "cut-off submits land":
            w.land_in_flight()
        elif change == "scheduler purges ended records":
            w.purge()  # their ids become free for reuse
        elif w.strangers < 2:
            # Someone else's job takes the smallest free id -- maybe one we remember.
            w.add_stranger(GPUS[0] if change.endswith("gpu0") else GPUS[1])

    @rule(seconds=st.sampled_from([10, 130, 3700]))
    @traced
    def time_passes(self, seconds: int) -> None:
        """10 s: backoff over; 130 s: past the kill window; 3700 s: past the job timeout."""
        self.clock.now += timedelta(seconds=seconds)

    @rule(
        pick=st.integers(0, 7),
        event=st.sampled_from(
            [
                "start",
                "start",
                "succeed",
                "succeed",
                "fail",
                "killed_outside",
                "vanish",
                "record_lost",
                "processes_die",
                "succeed_leaving_a_descendant",
                "succeed_leaving_a_descendant",
                "kill_takes_effect",
                "kill_takes_effect",
                "reported_killed_but_lingers",
            ]
        ),
    )
    @traced
    def remote_job(self, pick: int, event: str) -> None:
        """Something happens to one of our jobs on the server."""
        self.job_event(pick, event)

    def job_event(self, pick: int, event: str) -> None:
        """Apply ``event`` to our ``pick``-th job still known or running (if it applies)."""
        jobs = [j for j in self.world.jobs if j.ours and (j.alive or j.listed)]
        if not jobs:
            return
        job = jobs[pick % len(jobs)]
        w = self.world
        running = job.alive and job.state in (JobState.QUEUED, JobState.RUNNING)
        if event == "start" and running:
            w.start(job)
        elif event == "succeed" and running:
            w.finish(job, JobState.SUCCEEDED, 0)
        elif event == "fail" and running:
            w.finish(job, JobState.FAILED, 3)
        elif event == "killed_outside" and running:
            w.finish(job, JobState.KILLED)
        elif event == "vanish" and running:
            w.finish(job, JobState.ABSENT)
            job.listed = False
        elif event == "record_lost" and job.alive:
            job.listed = False  # the scheduler forgot it; the processes run on
        elif event == "succeed_leaving_a_descendant" and running:
            job.detached = True  # `setsid sleep 100000 &`: outlives the job's group
            w.finish(job, JobState.SUCCEEDED, 0)
        elif event == "kill_takes_effect" and job.kill_pending:
            w.finish(job, JobState.KILLED, by_us=True)
        elif event == "reported_killed_but_lingers" and job.kill_pending:
            job.state, job.kill_pending = JobState.KILLED, False
        elif event == "processes_die" and job.alive and not running:
            job.alive = job.detached = False

    # -- the operator --------------------------------------------------------------------
    @rule(
        pick=st.integers(0, MAX_CASES - 1),
        action=st.sampled_from(
            [
                "cancel",
                "cancel",
                "retry",
                "gpu0 offline",
                "gpu0 online",
                "gpu1 offline",
                "gpu1 online",
            ]
        ),
    )
    @traced
    def operator(self, pick: int, action: str) -> None:
        """As ``Communicator``: cancel (flag a busy case, end a waiting one), retry, GPU offline."""
        self._step()
        if action.startswith("gpu"):
            gpu = GPUS[0] if action.startswith("gpu0") else GPUS[1]
            self.store.set_gpu_offline(gpu, self.clock(), action.endswith("offline"))
        elif self.case_ids:
            case = self.store.get_case(self.case_ids[pick % len(self.case_ids)])
            if action == "cancel":
                self._cancel(case)
            else:
                self._retry(case)
        self.busy = False

    def _cancel(self, case: CaseRecord) -> None:
        if case.status not in TERMINAL_CASE_STATES:
            cancel_case(self.store, case.id, self.clock())

    def _retry(self, case: CaseRecord) -> None:
        if case.status in (CaseState.FAILED, CaseState.CANCELLED) and case.attempt < 5:
            now = self.clock()
            ev = Evidence(EvidenceKind.OPERATOR, None, now, detail="retry")
            # One step: the retry row also resets the fault counters.
            self.store.apply(case.id, CaseTrigger.RETRY, None, None, evidence=ev, now=now)


class WarmSafetyMachine(SafetyMachine):
    """The same machine, started with two cases already running (for the planted hunt).

    Every rule and check is inherited; only the first steps are fixed, so a short run
    spends its steps on the kill paths instead of on getting jobs started.
    """

    @initialize()
    def warm_start(self) -> None:  # type: ignore[override]
        self._warm(2)
