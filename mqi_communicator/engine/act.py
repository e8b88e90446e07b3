"""Persist one step or note of a case, on the attempt it was decided for.

Every outcome goes through the store in one transaction, with the compare-and-set on
the attempt and label the remote action was started for (engine/kills.py sends kills).
"""

from __future__ import annotations

import logging
from datetime import datetime

from ..errors import ConflictError, InvalidTransitionError, StaleOutcomeError
from ..persistence import CaseRecord
from ..statemachine.decide import Apply
from ..statemachine.triggers import KillReason
from .runtime import TickContext

__all__ = [
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
