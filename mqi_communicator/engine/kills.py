"""Kills and zombie checks: the intent is recorded in the tick, the remote call beside it.

Order matters for crash safety: intent is recorded *before* the remote action (a case's
``kill_requested_at``; a zombie's ``kill_requested_at`` and ``next_check_at``), so a
crash or a stop in between leaves a record that the next tick completes or resolves.

The remote call (``scheduler.kill``; a zombie's lookup by label and its poll) runs
beside the tick through :func:`~.transfers.run_beside`, holding the keys of the case
and of its GPU (:func:`case_keys`), or of the zombie GPU: over a link that hangs it
blocks only itself, never the polls, timeouts and claims of the other cases. While it is
in flight the tick does not act on that case or GPU (engine/reconcile.py), so the GPU
stays ``assigned`` or ``zombie`` whatever a poll says meanwhile. Its outcome (a kill
that could not be sent quarantines the GPU) is applied when it returns, through the
store in one transaction, on the attempt and label it was sent for (``started``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from ..errors import (
    ConflictError,
    HostUnreachableError,
    InvalidTransitionError,
    MqiError,
    SchedulerUnavailableError,
    StaleOutcomeError,
)
from ..persistence import CaseRecord, GpuRecord
from ..remote.protocol import JobRef, JobStatus
from ..statemachine.decide import (
    Apply,
    Decision,
    JobObservation,
    MarkStarted,
    RequestKill,
    Wait,
    decide_kill_unreachable,
    decide_zombie,
)
from ..statemachine.triggers import CaseTrigger, KillReason
from .act import apply_case_step, drop_stale, note_case
from .fault import guard_case, guard_gpu
from .runtime import HostRuntime, JobKey, TickContext, case_ref, case_view, gpu_ref, gpu_view
from .transfers import gpu_key, run_beside

__all__ = [
    "act_on_case",
    "act_on_gpu",
    "case_keys",
    "check_stray",
    "observation",
    "unreachable",
]

log = logging.getLogger("mqi_communicator.engine")


def case_keys(case: CaseRecord) -> tuple[JobKey, ...]:
    """The pool keys of a remote action on ``case``: the case, and the GPU it holds."""
    return (case.id, gpu_key(case.gpu_name)) if case.gpu_name else (case.id,)


def act_on_case(ctx: TickContext, case: CaseRecord, decision: Decision) -> None:
    """Carry out a decision about a running case."""
    if isinstance(decision, Apply):
        apply_case_step(ctx, case, decision)
    elif isinstance(decision, MarkStarted):
        note_case(ctx, case, "job started", started_at=decision.started_at)
    elif isinstance(decision, RequestKill):
        _kill_case(ctx, case, decision.reason)
    elif isinstance(decision, Wait) and case.kill_requested_at is not None:
        _resend_kill(ctx, case)


def _kill_case(ctx: TickContext, case: CaseRecord, reason: KillReason) -> None:
    host = ctx.host_of_case(case)
    # Intent first: if we crash after this line, the kill window still runs out and the
    # GPU is quarantined rather than silently freed.
    # A case that moved on to another attempt is not this kill's to end.
    if not _request_kill(ctx, case, reason):
        return
    ctx.report.kills += 1
    if host is None:
        return
    # Not started now (no room, stopping): the next tick's Wait sends it again.
    run_beside(ctx, case_keys(case), host.name, partial(_send_kill, case, host, True))


def _send_kill(case: CaseRecord, host: HostRuntime, first: bool, ctx: TickContext) -> None:
    # The case's fault boundary, as in the tick (a bug in an adapter stays with it).
    guard_case(ctx, case, "killing", partial(_kill_now, ctx, host, first))


def _kill_now(ctx: TickContext, host: HostRuntime, first: bool, case: CaseRecord) -> None:
    try:
        host.scheduler.kill(case_ref(case))
    except HostUnreachableError as err:
        ctx.host_down(host.name, err)
        if first:
            fresh = ctx.store.get_case(case.id)
            step = decide_kill_unreachable(case_view(fresh), ctx.now)
            apply_case_step(ctx, fresh, step, started=case)
    except MqiError as err:
        # e.g. the job ended between poll and kill; the next poll decides.
        log.info("kill of case %s refused: %s", case.id, err)


def _request_kill(ctx: TickContext, case: CaseRecord, reason: KillReason) -> bool:
    """Record the kill request on the attempt it is for; False if the case moved on."""
    try:
        ctx.store.apply(
            case.id,
            CaseTrigger.REQUEST_KILL,
            None,
            None,
            evidence=None,
            now=ctx.now,
            detail=f"kill requested: {reason}",
            kill_reason=reason,
            expected_attempt=case.attempt,
            expected_label=case.label,
        )
    except StaleOutcomeError as err:
        drop_stale(ctx, case, err)
        return False
    except InvalidTransitionError as err:
        log.info("case %s: no kill requested: %s", case.id, err)
        return False
    return True


def _resend_kill(ctx: TickContext, case: CaseRecord) -> None:
    host = ctx.host_of_case(case)
    if host is None or ctx.health.is_down(host.name, ctx.now):
        return
    run_beside(ctx, case_keys(case), host.name, partial(_send_kill, case, host, False))


def _next_zombie_interval(ctx: TickContext, gpu: GpuRecord) -> timedelta:
    """Double the previous re-kill interval (persisted as next_check - last kill), capped."""
    backoff = ctx.health.backoff
    previous = timedelta(0)
    if gpu.kill_requested_at is not None and gpu.next_check_at is not None:
        previous = gpu.next_check_at - gpu.kill_requested_at
    seconds = max(backoff.base_s, previous.total_seconds() * backoff.factor)
    return timedelta(seconds=min(backoff.cap_s, seconds))


def act_on_gpu(ctx: TickContext, gpu: GpuRecord, decision: Decision) -> None:
    """Carry out a decision about a zombie GPU (recover, or kill again with backoff)."""
    if isinstance(decision, Apply):
        try:
            ctx.store.apply(
                None,
                None,
                gpu.name,
                decision.gpu_trigger,
                evidence=decision.evidence,
                now=ctx.now,
                detail=decision.reason,
                expected_label=gpu.job_label,
            )
        except (ConflictError, InvalidTransitionError) as err:
            log.info("zombie %s not recovered this tick: %s", gpu.name, err)
            return
        ctx.report.transitions += 1
        log.info("GPU %s recovered: %s", gpu.name, decision.reason)
    elif isinstance(decision, RequestKill):
        if gpu.next_check_at is not None and ctx.now < gpu.next_check_at:
            return
        host = ctx.host_of_gpu(gpu)
        delay = _next_zombie_interval(ctx, gpu)
        ctx.store.update_gpu(
            gpu.name,
            ctx.now,
            detail="zombie: kill requested again",
            kill_requested_at=ctx.now,
            next_check_at=ctx.now + delay,
        )
        ctx.report.kills += 1
        if host is not None:  # not started now: sent again after next_check_at
            run_beside(ctx, gpu_key(gpu.name), host.name, partial(_kill_zombie, gpu, host))


def _kill_zombie(gpu: GpuRecord, host: HostRuntime, ctx: TickContext) -> None:
    # The GPU's fault boundary, as in the tick (a bug in an adapter stays with it).
    guard_gpu(ctx, gpu, "checking the zombie", partial(_rekill, ctx, host, gpu))


def _rekill(ctx: TickContext, host: HostRuntime, gpu: GpuRecord) -> None:
    try:
        host.scheduler.kill(gpu_ref(gpu))
    except HostUnreachableError as err:
        ctx.host_down(host.name, err)
    except MqiError as err:
        log.info("re-kill on zombie %s refused: %s", gpu.name, err)


def check_stray(gpu: GpuRecord, host: HostRuntime, ctx: TickContext) -> None:
    """A zombie whose job id we never learned: look it up by label, poll it, act.

    One job beside the tick (it holds the GPU's key), so the poll follows the lookup at
    once, as when both ran in the tick; inside the GPU's fault boundary.
    """
    guard_gpu(ctx, gpu, "looking up the zombie's job", partial(_check_stray, ctx, host, gpu))


def _check_stray(ctx: TickContext, host: HostRuntime, gpu: GpuRecord) -> None:
    assert gpu.job_label is not None
    try:
        ref = host.scheduler.find_by_label(gpu.job_label, gpu.job_dir or "")
        # Not found while the scheduler answered: poll the label-only ref, which the
        # adapter reports as absent unless the wrapper's processes still live.
        ref = ref or JobRef(job_id="", label=gpu.job_label, remote_dir=gpu.job_dir or "")
        statuses = host.scheduler.poll([ref])
    except (HostUnreachableError, SchedulerUnavailableError) as err:
        ctx.host_down(host.name, err)
        return
    except MqiError as err:
        log.warning("zombie %s: lookup by label failed: %s", gpu.name, err)
        return
    ctx.health.succeeded(host.name)
    act_on_gpu(ctx, gpu, decide_zombie(gpu_view(gpu), observation(ctx, statuses.get(ref))))


def unreachable(ctx: TickContext) -> JobObservation:
    """The observation of a job whose host could not be asked."""
    return JobObservation(reachable=False, observed_at=ctx.now)


def observation(ctx: TickContext, status: JobStatus | None) -> JobObservation:
    """What a poll's ``status`` says about one job, observed at ``ctx.now``."""
    if status is None:
        return JobObservation(reachable=True, observed_at=ctx.now, detail="no status returned")
    return JobObservation(
        reachable=True,
        observed_at=ctx.now,
        state=status.state,
        exit_code=status.exit_code,
        processes_gone=status.processes_gone,
        detail=status.detail,
        log_tail=status.log_tail,
        started_at=status.started_at,
    )
