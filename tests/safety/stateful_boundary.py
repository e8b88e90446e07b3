"""Rules of the Hypothesis machine for the boundary situations of issue 8.

Mixed into :class:`~.stateful_machine.SafetyMachine`:

* ``job_overruns``: a job runs past the job timeout; the engine's kill works, is
  ignored, cannot be sent (the host drops right after the poll), or cannot be confirmed
  (the probe goes blind right after it);
* ``stale_outcome_arrives``: an outcome computed for an EARLIER attempt of a case (engine
  1's upload error, built from the fresh row as the engine did in issue 8, bug 3) reaches
  the store while the case is on a newer attempt (waiting, running or retrieving); the
  store's compare-and-set on that attempt must refuse it;
* ``second_engine_mid_tick``: a second engine on the same database runs a whole tick
  while this one waits on a remote call (after ``delay`` seconds: a long upload).

The detached descendant, the blind probe and the forged marker live in the simulated
world (:mod:`.sim_world`) and in the ``remote_job``/``environment``/``case_arrives`` rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from mqi_communicator.engine import EngineSettings, GpuRuntime, HostRuntime, Reconciler
from mqi_communicator.persistence import CaseRecord, Store, TransitionRecord
from mqi_communicator.remote.protocol import GpuBinding
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind
from mqi_communicator.statemachine.jobs import JobState

from .sim_transport import SimTransport
from .sim_world import SimScheduler
from .stateful_support import (
    BACKOFF,
    CAS_MERGED,
    GPUS,
    HOST,
    MAX_CASES,
    POLICY,
    STATS,
    apply_for_attempt,
    traced,
)

__all__ = ["BoundaryRules"]

_HOLDING = (CaseState.SUBMITTING, CaseState.RUNNING)
_LIVE = (CaseState.SUBMITTED, *_HOLDING, CaseState.RETRIEVING)


class BoundaryRules:
    """The rules above; state lives on the machine itself."""

    store: Any
    world: Any
    clock: Any
    url: str
    tmp: Any
    busy: bool
    #: Cases on a newer attempt than one they were claimed for: case id -> that label.
    superseded: dict[int, str]
    reached: set[str]

    _step: Callable[[], None]  # from the machine

    def remember_attempts(self, cases: list[CaseRecord], history: list[TransitionRecord]) -> None:
        """Note the live cases claimed before under another label (from the audit trail)."""
        claimed: dict[int, str] = {}
        for t in history:
            if t.trigger == "claim" and t.case_id is not None and t.label is not None:
                claimed.setdefault(t.case_id, t.label)  # the first attempt's label
        self.superseded = {
            c.id: claimed[c.id]
            for c in cases
            if c.status in _LIVE and c.id in claimed and claimed[c.id] != c.label
        }

    @rule(
        pick=st.integers(0, MAX_CASES - 1),
        kill=st.sampled_from(["works", "works", "ignored", "unreachable", "then_blind"]),
    )
    @traced
    def job_overruns(self, pick: int, kill: str) -> None:
        """A running case's job starts (if it had not), runs past the job timeout, and
        the engine ticks: its timeout kill works, is ignored, cannot be sent, or is sent
        just before the probe goes blind."""
        self._step()
        w = self.world
        running = [
            c
            for c in self.store.list_cases((CaseState.RUNNING,))
            if c.kill_requested_at is None and c.label is not None
        ]
        if running:
            case = running[pick % len(running)]
            job = w.ours_by_label(case.label)
            if job is not None and job.alive and job.state is JobState.QUEUED:
                w.start(job)
            if case.started_at is None:
                self.clock.now += timedelta(seconds=5)
                self.reconciler_tick()  # observes it running: the timeout clock starts
                case = self.store.get_case(case.id)
            if case.started_at is not None:
                self.clock.now = max(self.clock.now, case.started_at + POLICY.job_timeout)
        self.clock.now += timedelta(seconds=5)
        w.kills_work = kill != "ignored"
        if kill == "unreachable":
            w.drop_countdown = 1  # the poll gets through, the kill does not
        try:
            self.reconciler_tick()
        finally:
            w.drop_countdown = None
        # /tmp on the server fills up: from now on the probe cannot tell liveness.
        w.blind = w.blind or kill == "then_blind"
        self.busy = False

    def reconciler_tick(self) -> None:
        """One tick of this machine's engine (no clock step)."""
        self.reconciler.tick()  # type: ignore[attr-defined]

    @precondition(lambda self: bool(self.superseded))
    @rule(pick=st.integers(0, MAX_CASES - 1))
    @traced
    def stale_outcome_arrives(self, pick: int) -> None:
        """Attempt 1's upload error arrives while the case is on a newer attempt."""
        self._step()
        ids = sorted(self.superseded)
        case_id = ids[pick % len(ids)]
        old_label, row = self.superseded[case_id], self.store.get_case(case_id)
        if row.label != old_label and row.status in _LIVE:
            now = self.clock()
            # Evidence as the engine built it in bug 3: from the row as it is NOW.
            ev = Evidence(EvidenceKind.NEVER_SUBMITTED, row.label, now, detail="stale upload error")
            # The row as engine 1 read it then: that label, and an older version.
            then = replace(row, label=old_label, version=row.version - 1)
            taken = apply_for_attempt(self.store, then, "requeue", "release", ev, now)
            assert not taken, f"the store applied {old_label}'s outcome to {row.label}"
            STATS["stale_refused"] += 1
            self.reached.add("stale_outcome_refused")
        self.busy = False

    @precondition(lambda self: CAS_MERGED)
    @rule(calls=st.integers(0, 3), delay=st.sampled_from([0, 2000, 4000]), ticks=st.integers(1, 2))
    @traced
    def second_engine_mid_tick(self, calls: int, delay: int, ticks: int = 1) -> None:
        """Engine 2 ticks ``ticks`` times while this engine waits on its ``calls``-th
        remote call, which takes ``delay`` seconds (a long upload, or a frozen engine).

        Both engines hold leases (neither is exclusive: several engines share a
        database only on PostgreSQL). A ``delay`` beyond the lease's TTL expires this
        engine's leases, so engine 2 may take its ``submitting`` case over; this engine's
        late outcomes must then be dropped and its late submit never start.
        """
        self._step()
        self.clock.now += timedelta(seconds=5)
        fired: list[bool] = []

        def other_engine() -> None:
            self.clock.now += timedelta(seconds=delay)
            fired.append(True)
            if delay >= self.reconciler.settings.lease_ttl_s:
                # This engine was frozen past its lease (README "Several communicators":
                # a VM pause). Expiry is judged on the DATABASE's clock, which the fake
                # clock does not move: expire the frozen engine's leases as time would.
                for case_id in self.case_ids:
                    self.store.release_lease(case_id, self.reconciler.engine_id)
                STATS["lease_expired"] += 1
            with Store.open(self.url) as store:
                engine = _second_engine(store, self)
                for _ in range(ticks):
                    engine.tick()

        def countdown(n: int) -> None:
            if n > 0:
                self.world.on_call = lambda: countdown(n - 1)
            else:
                other_engine()

        self.world.on_call = lambda: countdown(calls)
        try:
            self.reconciler_tick()
        finally:
            self.world.on_call = None
        if fired:
            self.reached.add("second_engine_mid_tick")
            if delay >= self.reconciler.settings.lease_ttl_s:
                self.reached.add("second_engine_after_lease_expired")
        self.busy = False


def _second_engine(store: Store, machine: Any) -> Reconciler:
    """Another engine on the same database and server, as on PostgreSQL: not exclusive."""
    world = machine.world
    host = HostRuntime(HOST, SimTransport(world), SimScheduler(world), "/work")
    gpus = [GpuRuntime(n, HOST, GpuBinding(n, pueue_group=n.split("/")[1])) for n in GPUS]
    settings = EngineSettings(
        command=("moqui",), results_dir=machine.tmp / "results2", exclusive=False
    )
    return Reconciler(
        store,
        {HOST: host},
        gpus,
        policy=POLICY,
        settings=settings,
        clock=machine.clock,
        backoff=BACKOFF,
    )
