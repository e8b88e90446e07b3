"""The fault boundary: an error while working on one case (or one GPU) stays with it.

Every per-case and per-GPU step of a tick runs through :func:`guard_case` or
:func:`guard_gpu`, inline or from a transfer worker (each takes the work as a
function of the case). Whatever the step raises (a local ``OSError``, a bug, a step the
machine refuses) is caught there, so the other cases keep flowing in the same tick.

For a case the error is

- **logged once** with its traceback (the case's first consecutive local failure), and
  afterwards as one line with the count;
- **counted** in ``cases.local_failures`` and kept in ``cases.last_error``;
- **backed off**: ``cases.next_attempt_at`` = now + the engine's backoff
  (``engine.backoff``: exponential, capped), shown by ``cases show`` and ``status``;
  the case is not touched before then;
- **given up** after ``engine.max_local_failures`` consecutive failures: the case fails
  with the reason (GPU quarantined if it still held one; see
  :func:`~mqi_communicator.statemachine.faults.decide_local_failure`).

The count restarts when the case moves forward (submitted, job succeeded) or an
operator retries it.

A GPU's own checks (a zombie's lookup and re-kill) follow the same rules in the GPU's
row (``gpu_resources.local_failures``, ``last_error``, ``next_attempt_at``; migration
0007), written as a note in one transaction; the count restarts when a check works or
the GPU changes state (the tables' effects). A GPU never gives up: a zombie is only
ever freed on evidence. A host's poll that raises locally (a bug in an adapter) is
counted and backed off in its ``host_health`` row (``poll_*``; see
:mod:`mqi_communicator.persistence.host_health` for why there). Both live in the
database only: ``status``, ``gpus list`` and the web console show them from other
processes, and a restarted engine honours their ``next attempt at``.

Waits for a full or unwritable results disk are not failures: see
:func:`storage_errno` and ``engine/retrieve_step.py``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime
from functools import partial

from ..errors import StaleOutcomeError
from ..persistence import CaseRecord, GpuRecord
from ..persistence.host_health import HostHealthRecord, clear_poll_fault, record_poll_fault
from ..statemachine.decide import Apply
from ..statemachine.faults import decide_local_failure
from .act import apply_case_record, note_case
from .runtime import TickContext, case_view
from .transfers import gpu_key

__all__ = [
    "STORAGE_ERRNOS",
    "error_text",
    "gpu_failed",
    "guard_case",
    "guard_gpu",
    "is_due",
    "poll_due",
    "poll_failed",
    "poll_worked",
    "storage_errno",
]

log = logging.getLogger("mqi_communicator.engine")

#: Local errors that mean "the results disk cannot take them now": the disk (or quota)
#: is full, or the results folder is read-only or not ours to write. An operator fixes
#: these (free space, remount, chmod) while the results wait safely on the far side,
#: so a retrieval that meets one WAITS with backoff, however long, and never fails.
#: Every other local error counts toward ``engine.max_local_failures``.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})

_TEXT_MAX = 500


def error_text(err: BaseException) -> str:
    """One line naming the error: its type and message (control characters kept out)."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 3] + "..."


def storage_errno(err: BaseException) -> int | None:
    """The errno of a "results disk cannot take it" error in ``err``'s chain, if any.

    Transports wrap local ``OSError``s (``TransferError(...) from err``), so the cause
    chain is walked, not only ``err`` itself.
    """
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in STORAGE_ERRNOS:
            return cur.errno
        cur = cur.__cause__ or cur.__context__
    return None


def is_due(row: CaseRecord | GpuRecord, now: datetime) -> bool:
    """False while the case or GPU is backing off (``next_attempt_at`` in the future)."""
    return row.next_attempt_at is None or now >= row.next_attempt_at


def guard_case(
    ctx: TickContext, case: CaseRecord, stage: str, work: Callable[[CaseRecord], None]
) -> bool:
    """Run ``work(case)`` inside the case's boundary; True when it raised nothing.

    ``stage`` names the step for the log and the reason ("retrieving", "starting").
    A case still backing off is skipped (False). Safe to call from a worker thread.
    """
    if not is_due(case, ctx.now):
        return False
    try:
        work(case)
    except Exception as err:  # the boundary: nothing of one case may stop the others
        try:
            _record_case_fault(ctx, case, stage, err)
        except Exception as inner:  # e.g. the database is gone: the tick will say so
            log.error("case %s: could not record a local error (%s): %s", case.id, err, inner)
        return False
    return True


def _record_case_fault(ctx: TickContext, case: CaseRecord, stage: str, err: Exception) -> None:
    text = error_text(err)
    ctx.report.errors.append(f"case {case.id}: {stage}: {text}")
    fresh = ctx.store.get_case(case.id)
    if fresh.attempt != case.attempt or fresh.label != case.label:
        log.warning("case %s: local error of an earlier attempt dropped: %s", case.id, text)
        return
    failures = fresh.local_failures + 1
    decision = decide_local_failure(case_view(fresh), text, stage, ctx.policy)
    if isinstance(decision, Apply):
        log.error("case %s: %s", case.id, decision.reason)
        apply_case_record(ctx, fresh, decision, started=case)
        return
    delay = ctx.health.backoff.delay(failures)
    retry_at = ctx.now + delay
    if fresh.local_failures == 0:
        log.warning(
            "case %s: local error while %s; next attempt at %s (isolated; other cases go on)",
            case.id,
            stage,
            f"{retry_at:%Y-%m-%d %H:%M:%S}",
            exc_info=err,
        )
    else:
        log.warning(
            "case %s: local error while %s again (%d in a row; next attempt at %s): %s",
            case.id,
            stage,
            failures,
            f"{retry_at:%Y-%m-%d %H:%M:%S}",
            text,
        )
    note_case(
        ctx,
        case,
        decision.reason,
        local_failures=failures,
        last_error=f"{stage}: {text}",
        next_attempt_at=retry_at,
    )


#: The GPUs whose boundary the running code is inside (per thread: a new thread starts empty).
_INSIDE: ContextVar[frozenset[str]] = ContextVar("mqi_gpu_boundary", default=frozenset())


def guard_gpu(ctx: TickContext, gpu: GpuRecord, stage: str, work: Callable[[], None]) -> bool:
    """Run ``work()`` inside the GPU's boundary; True when it raised nothing.

    A GPU still backing off is skipped (False). A check that works after failures
    clears them (a note; a step that moved the GPU already reset them).

    Nested in this GPU's own boundary on the same thread (a re-kill that a check runs
    inline), ``work`` just runs: the outer boundary counts its error, once. A re-kill
    beside the tick runs in a thread of its own, so it gets a boundary of its own.
    """
    if gpu.name in _INSIDE.get():
        work()
        return True
    if not is_due(gpu, ctx.now):
        return False
    inside = _INSIDE.set(_INSIDE.get() | {gpu.name})
    try:
        work()
    except Exception as err:  # the boundary
        gpu_failed(ctx, gpu, stage, err)
        return False
    finally:
        _INSIDE.reset(inside)
    if gpu.local_failures and not _handed_over(ctx, gpu):
        try:
            ctx.store.update_gpu(
                gpu.name,
                ctx.now,
                detail=f"{stage}: works again",
                expected_label=gpu.job_label,
                local_failures=0,
                last_error=None,
                next_attempt_at=None,
            )
            log.info(
                "GPU %s: %s works again after %d local errors", gpu.name, stage, gpu.local_failures
            )
        except StaleOutcomeError:
            pass  # it recovered or holds another job: that step reset the count
        except Exception as err:  # e.g. the database is busy: the next good check clears
            log.warning("GPU %s: could not clear its local errors: %s", gpu.name, err)
    return True


def _handed_over(ctx: TickContext, gpu: GpuRecord) -> bool:
    """The check started a job beside the tick (a re-kill) that settles the count itself.

    Its boundary (another thread) records its error or clears the count when it works;
    clearing here too could wipe out an error it has just recorded.
    """
    key = gpu_key(gpu.name)
    return ctx.transfers is not None and key not in ctx.held and ctx.transfers.busy(key)


def gpu_failed(ctx: TickContext, gpu: GpuRecord, stage: str, err: Exception) -> None:
    """Count, back off and log (the traceback the first time) a local error of ``gpu``."""
    text = error_text(err)
    ctx.report.errors.append(f"GPU {gpu.name}: {stage}: {text}")
    failures = gpu.local_failures + 1
    retry_at = ctx.now + ctx.health.backoff.delay(failures)
    when = f"{retry_at:%Y-%m-%d %H:%M:%S}"
    try:
        ctx.store.update_gpu(
            gpu.name,
            ctx.now,
            detail=f"local error while {stage} ({failures} in a row)",
            expected_label=gpu.job_label,
            local_failures=failures,
            last_error=f"{stage}: {text}",
            next_attempt_at=retry_at,
        )
    except StaleOutcomeError:
        log.warning(
            "GPU %s: local error about a job it no longer holds dropped: %s", gpu.name, text
        )
        return
    except Exception as inner:  # e.g. the database is gone: the tick will say so
        log.error("GPU %s: could not record a local error (%s): %s", gpu.name, text, inner)
        return
    if failures == 1:
        log.warning(
            "GPU %s: local error while %s; next attempt at %s (isolated; others go on)",
            gpu.name,
            stage,
            when,
            exc_info=err,
        )
    else:
        log.warning(
            "GPU %s: local error while %s again (%d in a row; next attempt at %s): %s",
            gpu.name,
            stage,
            failures,
            when,
            text,
        )


def poll_due(rec: HostHealthRecord | None, now: datetime) -> bool:
    """False while a host's poll backs off after local errors (its persisted row)."""
    return rec is None or rec.poll_next_at is None or now >= rec.poll_next_at


def poll_failed(ctx: TickContext, host: str, rec: HostHealthRecord | None, err: Exception) -> None:
    """Count, back off and log a poll of ``host`` that raised locally (``rec``: its row)."""
    text = error_text(err)
    ctx.report.errors.append(f"poll on {host}: {text}")
    failures = (rec.poll_failures if rec is not None else 0) + 1
    retry_at = ctx.now + ctx.health.backoff.delay(failures)
    write = partial(
        record_poll_fault, host=host, at=ctx.now, failures=failures, error=text, retry_at=retry_at
    )
    try:
        ctx.store.write(write)
    except Exception as inner:  # e.g. the database is busy: counted at the next failure
        log.error("poll on %s: could not record a local error (%s): %s", host, text, inner)
        return
    when = f"{retry_at:%Y-%m-%d %H:%M:%S}"
    if failures == 1:
        log.warning("poll on %s: local error; next attempt at %s", host, when, exc_info=err)
    else:
        log.warning(
            "poll on %s: local error again (%d in a row; next at %s): %s",
            host,
            failures,
            when,
            text,
        )


def poll_worked(ctx: TickContext, host: str) -> None:
    """A poll of ``host`` worked after local errors: clear them."""
    try:
        ctx.store.write(partial(clear_poll_fault, host=host, at=ctx.now))
    except Exception as err:  # the next good poll clears
        log.warning("poll on %s: could not clear its local errors: %s", host, err)
        return
    log.info("poll on %s works again", host)
