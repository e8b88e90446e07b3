"""The fault boundary: an error while working on one case (or one GPU) stays with it.

Every per-case and per-GPU step of a tick runs through :func:`guard_case` or
:meth:`FaultMemory.guard`, inline or from a transfer worker (each takes the work as a
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
operator retries it. A GPU (a zombie's checks) and a host's poll have no row to count
in: their failures are kept in memory by :class:`FaultMemory`, with the same log-once
and backoff rules, and shown in the log and the tick's report.

Waits for a full or unwritable results disk are not failures: see
:func:`storage_errno` and ``engine/retrieve_step.py``.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..persistence import CaseRecord
from ..statemachine.decide import Apply
from ..statemachine.faults import decide_local_failure
from .act import apply_case_record, note_case
from .backoff import Backoff
from .runtime import TickContext, case_view

__all__ = ["STORAGE_ERRNOS", "FaultMemory", "error_text", "guard_case", "is_due", "storage_errno"]

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


def is_due(case: CaseRecord, now: datetime) -> bool:
    """False while the case is backing off (``next_attempt_at`` in the future)."""
    return case.next_attempt_at is None or now >= case.next_attempt_at


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


@dataclass
class FaultMemory:
    """Failures of things that have no row to count in (a zombie GPU, a host's poll).

    Kept by the reconciler (one per engine), keyed by a name ("GPU local/gpu0");
    thread-safe, so a worker may use it too.
    """

    backoff: Backoff = field(default_factory=Backoff)
    _failures: dict[str, int] = field(default_factory=dict)
    _until: dict[str, datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_due(self, key: str, now: datetime) -> bool:
        """False while ``key`` is backing off."""
        with self._lock:
            until = self._until.get(key)
        return until is None or now >= until

    def failures(self, key: str) -> int:
        """Consecutive failures of ``key`` so far."""
        with self._lock:
            return self._failures.get(key, 0)

    def guard(self, ctx: TickContext, key: str, work: Callable[[], None]) -> bool:
        """Run ``work()`` inside ``key``'s boundary; True when it raised nothing."""
        if not self.is_due(key, ctx.now):
            return False
        try:
            work()
        except Exception as err:  # the boundary
            self.failed(ctx, key, err)
            return False
        with self._lock:
            self._failures.pop(key, None)
            self._until.pop(key, None)
        return True

    def failed(self, ctx: TickContext, key: str, err: Exception) -> None:
        """Count, back off, and log (with the traceback the first time) a failure of ``key``."""
        with self._lock:
            n = self._failures.get(key, 0) + 1
            self._failures[key] = n
            retry_at = ctx.now + self.backoff.delay(n)
            self._until[key] = retry_at
        text = error_text(err)
        ctx.report.errors.append(f"{key}: {text}")
        when = f"{retry_at:%Y-%m-%d %H:%M:%S}"
        if n == 1:
            log.warning("%s: local error; next attempt at %s", key, when, exc_info=err)
        else:
            log.warning("%s: local error again (%d in a row; next at %s): %s", key, n, when, text)
