"""Carry out one decision: persist a step, send a kill, or note a start time.

Order matters for crash safety: intent is recorded *before* the remote action, so a
crash in between leaves a record that the next tick completes or resolves.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from ..errors import (
    ConflictError,
    HostUnreachableError,
    InvalidTransitionError,
    MqiError,
    StaleOutcomeError,
)
from ..persistence import CaseRecord, GpuRecord
from ..statemachine.decide import (
    Apply,
    Decision,
    MarkStarted,
    RequestKill,
    Wait,
    decide_kill_unreachable,
)
from ..statemachine.triggers import CaseTrigger, KillReason
from .runtime import TickContext, case_ref, case_view, gpu_ref

__all__ = [
    "act_on_case",
    "act_on_gpu",
    "apply_case_record",
    "apply_case_step",
    "drop_stale",
    "note_case",
]

log = logging.getLogger("mqi_communicator.engine")


def apply_case_record(
    ctx: TickContext,
    case: CaseRecord,
    step: Apply,
    job_id: str | None = None,
    *,
    started: CaseRecord | None = None,
    retry_at: datetime | None = None,
    kill_reason: KillReason | None = None,
) -> CaseRecord | None:
    """Persist ``step`` for ``case`` (and its GPU); the case as written, or None if not.

    ``case`` is the row the decision was made on (its version is checked); ``started``
    (default ``case``) is the row the remote action was started from: the step lands
    only while the case still holds that attempt and label, else it is dropped.
    """
    origin = started if started is not None else case
    gpu_name = case.gpu_name if step.gpu_trigger else None
    try:
        written, _ = ctx.store.apply(
            case.id,
            step.case_trigger,
            gpu_name,
            step.gpu_trigger,
            evidence=step.evidence,
            now=ctx.now,
            detail=step.reason,
            failure_reason=step.failure_reason,
            job_id=job_id,
            retry_at=retry_at,
            kill_reason=kill_reason,
            expected_case_version=case.version,
            expected_attempt=origin.attempt,
            expected_label=origin.label,
        )
    except StaleOutcomeError as err:
        drop_stale(ctx, origin, err)
        return None
    except ConflictError:
        log.info("case %s changed under us; will look again next tick", case.id)
        return None
    except InvalidTransitionError as err:
        # A refused step wrote nothing. Log it and move on, so one case cannot starve
        # every other case of their ticks.
        log.error("case %s: step refused, nothing written: %s", case.id, err)
        ctx.report.errors.append(f"case {case.id}: {err}")
        return None
    ctx.report.transitions += 1
    log.info("case %s: %s (%s)", case.id, step.case_trigger, step.reason)
    return written


def apply_case_step(
    ctx: TickContext,
    case: CaseRecord,
    step: Apply,
    job_id: str | None = None,
    *,
    started: CaseRecord | None = None,
) -> bool:
    """Persist ``step`` for ``case`` (and its GPU). False if another writer got there first.

    See :func:`apply_case_record` for ``started``.
    """
    return apply_case_record(ctx, case, step, job_id, started=started) is not None


def note_case(ctx: TickContext, started: CaseRecord, detail: str, **fields: object) -> bool:
    """Set note fields on the case the action was started for; False if it moved on."""
    try:
        ctx.store.update_case(
            started.id,
            ctx.now,
            detail=detail,
            expected_attempt=started.attempt,
            expected_label=started.label,
            **fields,
        )
    except StaleOutcomeError as err:
        drop_stale(ctx, started, err)
        return False
    return True


def drop_stale(ctx: TickContext, started: CaseRecord, why: StaleOutcomeError | str) -> None:
    """Log (once, here) an outcome that belongs to an attempt the case no longer holds."""
    ctx.report.stale += 1
    log.warning(
        "case %s: stale outcome for attempt %s dropped (%s)", started.id, started.attempt, why
    )


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
    try:
        host.scheduler.kill(case_ref(case))
    except HostUnreachableError as err:
        ctx.host_down(host.name, err)
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
    try:
        host.scheduler.kill(case_ref(case))
    except HostUnreachableError as err:
        ctx.host_down(host.name, err)
    except MqiError as err:
        log.debug("re-kill of case %s refused: %s", case.id, err)


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
        if host is None:
            return
        try:
            host.scheduler.kill(gpu_ref(gpu))
        except HostUnreachableError as err:
            ctx.host_down(host.name, err)
        except MqiError as err:
            log.info("re-kill on zombie %s refused: %s", gpu.name, err)
