"""The events of the abstract world, each through the REAL machines and decisions.

Every move of a case or a GPU goes through the REAL
:func:`mqi_communicator.statemachine.plan_step` (hence the real tables and guards) and
every reconciler choice through the REAL :mod:`mqi_communicator.statemachine.decide`
functions. Time is abstracted into per-case flags ("the job timeout has elapsed since the
start", "the kill window has elapsed since the kill request"); each decision is handed
datetimes built from those flags, so the decide functions see real timedeltas.

What is abstracted away (the Hypothesis machine in ``test_stateful.py`` covers it with the
real store and reconciler): scheduler ids and their reuse (the abstract world matches jobs
by label only), file transfers, the database, the backoff clock. The engine's steps are
finer here than in a real tick (each case's decision is its own event), which only adds
interleavings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from mqi_communicator.errors import InvalidTransitionError
from mqi_communicator.statemachine import (
    CASE_STATES_HOLDING_GPU,
    CaseFacts,
    CaseState,
    Evidence,
    GpuFacts,
    GpuState,
    plan_step,
)
from mqi_communicator.statemachine import decide as D
from mqi_communicator.statemachine.jobs import JobState

from .abstract_state import (
    NOW,
    ACase,
    AGpu,
    AJob,
    Rejected,
    World,
    case_effects,
    deliver_kill,
    find_job,
    forget_dead,
    gpu_effects,
    initial_world,
    job_events,
    observe,
    put_job,
    replace_at,
    replace_case,
)

__all__ = ["ACase", "AGpu", "AJob", "Rejected", "Rules", "World", "initial_world"]

_JUST = timedelta(seconds=1)


class Rules:
    """The events of the abstract world, each through the real machines and decisions.

    Args:
        policy: The decision policy (``max_attempts`` bounds requeues).
        max_attempt: Operator retries stop at this attempt number (bounds the state space).
        plan: The step planner; defaults to the real ``plan_step`` (tests may wrap it).
    """

    def __init__(
        self,
        policy: D.Policy,
        max_attempt: int = 3,
        plan: Callable[..., Any] = plan_step,
        late_submits: bool = False,
    ) -> None:
        self.policy = policy
        #: Let a submit whose outcome was unknown reach the scheduler LATER (after the
        #: recovery lookup). Outside the protocol's contract; off by default.
        self.late_submits = late_submits
        self.max_attempt = max_attempt
        self._plan = plan
        self._planned: dict[tuple[Any, ...], Any] = {}
        self.rejected: list[Rejected] = []

    def plan(self, *args: Any) -> Any:
        """The planner, memoised: it is pure, and building a ``transitions`` machine is slow.

        Refusals are memoised too (as the exception) and raised again.
        """
        try:
            hit = self._planned[args]
        except KeyError:
            try:
                hit = self._plan(*args)
            except InvalidTransitionError as err:
                hit = err
            self._planned[args] = hit
        if isinstance(hit, InvalidTransitionError):
            raise hit
        return hit

    # -- time, as the decide functions see it -------------------------------------------
    def view(self, i: int, c: ACase) -> CaseFacts:
        started = None
        if c.started:
            started = NOW - (self.policy.job_timeout if c.timed_out else _JUST)
        requested = None
        if c.kill_requested:
            requested = NOW - (self.policy.kill_confirm_window if c.window_elapsed else _JUST)
        return CaseFacts(
            case_id=i,
            state=c.status,
            attempt=c.attempt,
            label=c.label,
            job_id=c.label,
            started_at=started,
            kill_requested_at=requested,
            kill_reason=c.kill_reason,
            cancel_requested=c.cancel_requested,
        )

    # -- the store: one step through the real machines -----------------------------------
    def step(
        self,
        w: World,
        event: str,
        ci: int | None,
        case_trigger: str | None,
        gi: int | None,
        gpu_trigger: str | None,
        evidence: Evidence | None,
        label: str | None = None,
    ) -> World | None:
        """Apply one step as the store would, or record the refusal and return None."""
        case = w.cases[ci] if ci is not None else None
        if gi is None and case is not None and gpu_trigger is not None:
            gi = case.gpu
        gpu = w.gpus[gi] if gi is not None else None
        cfacts = None
        if ci is not None and case is not None and case_trigger is not None:
            cfacts = CaseFacts(ci, case.status.value, label or case.label)
        gfacts = None
        if gi is not None and gpu is not None and gpu_trigger is not None:
            bound = ci if gpu_trigger == "assign" else gpu.case
            job_label = label if gpu_trigger == "assign" else gpu.job_label
            gfacts = GpuFacts(str(gi), gpu.status.value, bound, job_label, gpu.offline_requested)
        try:
            planned = self.plan(cfacts, case_trigger, gfacts, gpu_trigger, evidence)
        except InvalidTransitionError as err:
            self.rejected.append(Rejected(event, str(err)))
            return None
        if ci is not None and case is not None and planned.case_to is not None:
            w = w._replace(
                cases=replace_at(
                    w.cases, ci, case_effects(case, case_trigger, planned.case_to, gi, label)
                )
            )
        if gi is not None and gpu is not None and planned.gpu_to is not None:
            w = w._replace(
                gpus=replace_at(
                    w.gpus, gi, gpu_effects(gpu, gpu_trigger, planned.gpu_to, ci, label)
                )
            )
        return forget_dead(w)

    def apply(
        self, w: World, event: str, ci: int | None, gi: int | None, d: D.Apply
    ) -> World | None:
        """Carry out an ``Apply`` decision."""
        return self.step(w, event, ci, d.case_trigger, gi, d.gpu_trigger, d.evidence)

    # -- every event enabled in ``w`` -----------------------------------------------------
    def successors(self, w: World) -> Iterator[tuple[str, World]]:
        """Yield ``(event name, next world)`` for every enabled event."""
        yield from self._reconciler(w)
        yield from self._operator(w)
        yield from self._environment(w)

    def _reconciler(self, w: World) -> Iterator[tuple[str, World]]:
        for ci, c in enumerate(w.cases):
            if c.status is CaseState.SUBMITTED:
                if c.cancel_requested:
                    continue
                label = f"c{ci}a{c.attempt}"
                for gi, g in enumerate(w.gpus):
                    if g.status is GpuState.AVAILABLE and not g.offline_requested:
                        nw = self.step(
                            w, f"claim c{ci} g{gi}", ci, "claim", gi, "assign", None, label
                        )
                        if nw is not None:
                            yield f"claim c{ci} g{gi}", nw
            elif c.status is CaseState.SUBMITTING:
                yield from self._submitting(w, ci, c)
            elif c.status is CaseState.RUNNING:
                yield from self._poll_running(w, ci, c)
            elif c.status is CaseState.RETRIEVING:
                nw = self.step(w, f"retrieved c{ci}", ci, "retrieved", None, None, None)
                if nw is not None:
                    yield f"retrieved c{ci}", nw
                d = D.decide_retrieval_error(
                    self.view(ci, c), "bad", permanent=True, policy=self.policy
                )
                if isinstance(d, D.Apply):
                    nw = self.apply(w, f"retrieve-error c{ci}", ci, None, d)
                    if nw is not None:
                        yield f"retrieve-error c{ci}", nw
        for gi, g in enumerate(w.gpus):
            if g.status is GpuState.ZOMBIE:
                yield from self._zombie(w, gi, g)

    def _submitting(self, w: World, ci: int, c: ACase) -> Iterator[tuple[str, World]]:
        view = self.view(ci, c)
        assert c.gpu is not None and c.label is not None
        sent = any(label == c.label for label, _ in w.in_flight)
        if find_job(w, c.label) is None and w.net_up and not sent:
            # First attempt to submit this label (or again after a crash found nothing).
            job = AJob(c.label, c.gpu)
            ok = self.step(
                put_job(w, job), f"submit-ok c{ci}", ci, "confirm_submitted", None, None, None
            )
            if ok is not None:
                yield f"submit-ok c{ci}", ok
            # Submit timed out AFTER the scheduler created the job: outcome unknown.
            d = D.decide_after_submit_error(
                view, "timeout", permanent=False, sent=True, now=NOW, policy=self.policy
            )
            if isinstance(d, D.Wait):
                yield f"submit-unknown(created) c{ci}", put_job(w, job)
                if self.late_submits and (c.label, c.gpu) not in w.in_flight:
                    late = w._replace(in_flight=(*w.in_flight, (c.label, c.gpu)))
                    yield f"submit-unknown(still in flight) c{ci}", late
            for name, permanent in (("submit-failed", False), ("submit-rejected", True)):
                d = D.decide_after_submit_error(
                    view, "err", permanent=permanent, sent=False, now=NOW, policy=self.policy
                )
                if isinstance(d, D.Apply):
                    nw = self.apply(w, f"{name} c{ci}", ci, None, d)
                    if nw is not None:
                        yield f"{name} c{ci}", nw
        # Recovery by label (after a crash or an unknown outcome).
        job = find_job(w, c.label)
        found = job is not None and (job.sched is not JobState.ABSENT or job.alive)
        d = D.decide_submitting_recovery(
            view, c.label if found else None, w.net_up, NOW, self.policy
        )
        if isinstance(d, D.Apply):
            if not found:
                # The engine revokes the start first (submit_step._revoke_start): a submit
                # still on its way can then only land as a no-op, so it is dropped here.
                w = w._replace(in_flight=tuple(x for x in w.in_flight if x[0] != c.label))
            nw = self.apply(w, f"recover-submitting c{ci}", ci, None, d)
            if nw is not None:
                yield f"recover-submitting c{ci}", nw

    def _poll_running(self, w: World, ci: int, c: ACase) -> Iterator[tuple[str, World]]:
        d = D.decide_running(self.view(ci, c), observe(w, c.label), NOW, self.policy)
        ev = f"poll c{ci}"
        if isinstance(d, D.Apply):
            nw = self.apply(w, ev, ci, None, d)
            if nw is not None:
                yield ev, nw
        elif isinstance(d, D.MarkStarted):
            yield f"{ev}: mark started", replace_case(w, ci, started=True)
        elif isinstance(d, D.RequestKill):
            yield from self._kill_case(w, ci, c, d.reason)
        elif isinstance(d, D.Wait) and c.kill_requested and w.net_up:
            # The engine sends the kill again while it waits for confirmation.
            again = deliver_kill(w, c.label)
            if again != w:
                yield f"{ev}: kill again", again

    def _kill_case(self, w: World, ci: int, c: ACase, reason: str) -> Iterator[tuple[str, World]]:
        noted = replace_case(w, ci, kill_requested=True, kill_reason=reason, window_elapsed=False)
        if w.net_up:
            delivered = deliver_kill(w, c.label)
            yield (
                f"kill({reason}) c{ci}",
                replace_case(
                    delivered, ci, kill_requested=True, kill_reason=reason, window_elapsed=False
                ),
            )
            # The process crashed after sending the kill, before recording the request.
            yield f"kill({reason}) c{ci}, crash before recording", delivered
        # The kill could not be sent (host unreachable, also right after a good poll).
        d = D.decide_kill_unreachable(self.view(ci, noted.cases[ci]), NOW)
        nw = self.apply(w, f"kill({reason}) unreachable c{ci}", ci, None, d)
        if nw is not None:
            yield f"kill({reason}) unreachable c{ci}", nw

    def _zombie(self, w: World, gi: int, g: AGpu) -> Iterator[tuple[str, World]]:
        view = GpuFacts(str(gi), g.status, job_label=g.job_label, job_id=g.job_label)
        d = D.decide_zombie(view, observe(w, g.job_label))
        ev = f"check zombie g{gi}"
        if isinstance(d, D.Apply):
            nw = self.step(w, ev, None, None, gi, d.gpu_trigger, d.evidence)
            if nw is not None:
                yield ev, nw
        elif isinstance(d, D.RequestKill) and w.net_up:
            nw = deliver_kill(w, g.job_label)
            if nw != w:
                yield f"{ev}: kill", nw

    def _operator(self, w: World) -> Iterator[tuple[str, World]]:
        for ci, c in enumerate(w.cases):
            if c.status is CaseState.SUBMITTED:
                nw = self.step(w, f"cancel c{ci}", ci, "cancel", None, None, None)
                if nw is not None:
                    yield f"cancel c{ci}", nw
            elif c.status in CASE_STATES_HOLDING_GPU and not c.cancel_requested:
                yield f"cancel c{ci}", replace_case(w, ci, cancel_requested=True)
            elif (
                c.status in (CaseState.FAILED, CaseState.CANCELLED) and c.attempt < self.max_attempt
            ):
                nw = self.step(w, f"retry c{ci}", ci, "retry", None, None, None)
                if nw is not None:
                    yield f"retry c{ci}", nw
        for gi, g in enumerate(w.gpus):
            if not g.offline_requested:
                if g.status is GpuState.AVAILABLE:
                    nw = self.step(
                        w._replace(gpus=replace_at(w.gpus, gi, g._replace(offline_requested=True))),
                        f"offline g{gi}",
                        None,
                        None,
                        gi,
                        "take_offline",
                        None,
                    )
                else:
                    nw = w._replace(gpus=replace_at(w.gpus, gi, g._replace(offline_requested=True)))
                if nw is not None:
                    yield f"offline g{gi}", nw
            else:
                cleared = w._replace(
                    gpus=replace_at(w.gpus, gi, g._replace(offline_requested=False))
                )
                if g.status is GpuState.OFFLINE:
                    nw = self.step(cleared, f"online g{gi}", None, None, gi, "bring_online", None)
                else:
                    nw = cleared
                if nw is not None:
                    yield f"online g{gi}", nw

    def _environment(self, w: World) -> Iterator[tuple[str, World]]:
        yield (
            ("network down", w._replace(net_up=False))
            if w.net_up
            else ("network up", w._replace(net_up=True))
        )
        yield (
            ("kills ignored", w._replace(kills_work=False))
            if w.kills_work
            else ("kills work", w._replace(kills_work=True))
        )
        for ci, c in enumerate(w.cases):
            if c.status is CaseState.RUNNING and c.started and not c.timed_out:
                yield f"time: job timeout c{ci}", replace_case(w, ci, timed_out=True)
            if c.kill_requested and not c.window_elapsed:
                yield f"time: kill window c{ci}", replace_case(w, ci, window_elapsed=True)
        for j in w.jobs:
            yield from job_events(w, j)
        for label, gpu in w.in_flight:
            rest = tuple(x for x in w.in_flight if x != (label, gpu))
            landed = put_job(w._replace(in_flight=rest), AJob(label, gpu))
            yield f"late submit of {label} reaches the scheduler", landed
