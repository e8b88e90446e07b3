"""The checks of the Hypothesis machine: what must hold after every step, and at the end.

- ``safe_and_consistent`` (invariant): rows agree with the simulated truth (no GPU handed
  on while our job may live), with each other, and with the audit trail.
- ``teardown``: heal the world, then every case must come home within ``heal_bound``
  ticks (liveness); records which hard situations the example reached.

Mixed into :class:`~.stateful_machine.SafetyMachine`, whose attributes it reads.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis.stateful import invariant

from mqi_communicator.persistence import CaseRecord, TransitionRecord
from mqi_communicator.statemachine import TERMINAL_CASE_STATES, CaseState, GpuState
from mqi_communicator.statemachine.jobs import JobState

from .checks import agreement, replay, safety
from .stateful_support import GPUS, STATS, heal_bound, rows_text

__all__ = ["REACHED", "OracleChecks"]

#: In how many examples each hard situation was reached (filled by teardown).
REACHED: dict[str, int] = {}
#: Situations the simulated world counts when a poll meets them (``SimWorld.seen``).
_WORLD_SEEN = ("unknown_liveness", "forged_marker", "detached_descendant")


class OracleChecks:
    """Invariant, coverage notes and liveness; state lives on the machine itself."""

    store: Any
    world: Any
    clock: Any
    reconciler: Any
    gpus: Any
    case_ids: list[int]
    trail: list[str]
    dirty: bool
    busy: bool
    tmp: Any
    zombies_seen: set[str]
    busy_offline: set[str]
    reached: set[str]
    refused: list[str]
    remember_attempts: Callable[[list[CaseRecord], list[TransitionRecord]], None]
    drain_beside: Callable[[], None]

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def safe_and_consistent(self) -> None:
        """Rows vs. truth, rows vs. rows, rows vs. audit trail.

        The world's own moves never revive a process nor touch a row, so after them
        only ``safety`` is re-run, on the rows read last.
        """
        self.busy = True
        broken = []
        if self.dirty:
            cases, self.gpus = self.store.list_cases(), self.store.list_gpus()
            broken += agreement(cases, self.gpus)
            history = self.store.history()
            broken += replay(history, cases, self.gpus)
            self.dirty = False
            self._note_reached(cases)
            self.remember_attempts(cases, history)
        broken += safety(self.gpus, self.world)
        broken += [f"the engine offered a step the guards refuse: {r}" for r in self.refused]
        assert not broken, "\n".join([*broken, "after the steps:", *self.trail[-40:]])
        self.busy = False

    def _note_reached(self, cases: list[CaseRecord]) -> None:
        """Remember which hard situations this example got into (for the coverage figures)."""
        ours = {j.job_id for j in self.world.jobs if j.ours}
        remembered = {c.job_id for c in cases} | {g.job_id for g in self.gpus}
        seen = {
            "zombie": any(g.status is GpuState.ZOMBIE for g in self.gpus),
            "zombie_recovered": any(
                g.status is not GpuState.ZOMBIE and g.name in self.zombies_seen for g in self.gpus
            ),
            "kill_requested": any(c.kill_requested_at is not None for c in cases),
            "offline_drained": any(
                g.status is GpuState.OFFLINE and g.name in self.busy_offline for g in self.gpus
            ),
            "requeued": any(c.attempt > 1 for c in cases),
            "timeout_kill": any(c.kill_reason == "timeout" for c in cases),
            # The give-up of decide._give_up_kill: "timed out; <why>; GPU quarantined".
            "timeout_kill_failed": any(
                (c.failure_reason or "").startswith("timed out;") for c in cases
            ),
            **{name: self.world.seen[name] > 0 for name in _WORLD_SEEN},
            "completed": any(c.status is CaseState.COMPLETED for c in cases),
            "id_reused_by_stranger": any(
                j.listed and not j.ours and j.job_id in remembered and j.job_id in ours
                for j in self.world.jobs
            ),
        }
        self.zombies_seen |= {g.name for g in self.gpus if g.status is GpuState.ZOMBIE}
        self.busy_offline |= {
            g.name for g in self.gpus if g.offline_requested and g.status is GpuState.ASSIGNED
        }
        self.reached |= {name for name, hit in seen.items() if hit}

    # -- liveness, then clean up -----------------------------------------------------------
    def teardown(self) -> None:
        try:
            if not self.busy:
                self._liveness()
        finally:
            for name in self.reached:
                REACHED[name] = REACHED.get(name, 0) + 1
            self.store.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _liveness(self) -> None:
        """Heal the world, then at most ``heal_bound`` ticks bring every case home."""
        w = self.world
        w.reachable, w.kills_work, w.upload_ok, w.download_ok = True, True, True, True
        w.blind = False
        w.submit_mode, w.crash_countdown = "ok", None
        w.land_in_flight()  # late submits land too; revoked ones must stay no-ops
        if all(g.offline_requested for g in self.store.list_gpus()):
            self.store.set_gpu_offline(GPUS[0], self.clock(), False)
        bound = heal_bound(len(self.case_ids))
        self.drain_beside()
        for used in range(bound + 1):
            self._settle_jobs()
            cases, gpus = self.store.list_cases(), self.store.list_gpus()
            self.gpus = gpus
            self._note_reached(cases)  # the healing run counts too (zombies recover here)
            home = all(c.status in TERMINAL_CASE_STATES for c in cases) and all(
                g.status.value == ("offline" if g.offline_requested else "available") for g in gpus
            )
            if home:
                STATS["max_heal_ticks"] = max(STATS["max_heal_ticks"], used)
                return
            if used == bound:
                break
            self.clock.now += timedelta(minutes=10)
            self.reconciler.tick()
            self.drain_beside()  # a pooled engine's kills and lookups return
            broken = safety(self.store.list_gpus(), w) + self.refused
            assert not broken, "while healing: " + "\n".join(broken)
        raise AssertionError(f"not home after {bound} healed ticks:\n{rows_text(self.store)}")

    def _settle_jobs(self) -> None:
        """Kills take effect, lingering processes die, every other job of ours succeeds."""
        for job in self.world.alive_ours():
            job.detached = False  # a detached descendant ends too
            if job.kill_pending:
                self.world.finish(job, JobState.KILLED, by_us=True)
            elif job.state in (JobState.QUEUED, JobState.RUNNING):
                self.world.finish(job, JobState.SUCCEEDED, 0)
            else:
                job.alive = False
