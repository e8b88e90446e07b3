"""A retrieval that meets a full or unwritable results disk waits; it never fails for it.

Which errors wait is :data:`~mqi_communicator.engine.fault.STORAGE_ERRNOS` (ENOSPC,
EDQUOT: full; EROFS, EACCES, EPERM: not writable), plus a failed download whose
results, at the size the far side announced, no longer fit on the results disk (GNU
tar reports a full disk only in its message). The job's results are safe on the far
side and the case holds no GPU while ``retrieving``, so waiting costs nothing but time;
the operator sees why (``cases show``, ``status``: "waiting: results disk full (needs N
MB, M MB free)") and fixes the disk. The wait backs off like everything else
(``engine.backoff``), counted in ``cases.storage_waits``, which never fails the case.
"""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

from ..errors import TransferError
from ..persistence import CaseRecord
from .act import note_case
from .fault import error_text, storage_errno
from .runtime import TickContext

__all__ = ["storage_problem", "wait_for_storage", "wait_reason"]

log = logging.getLogger("mqi_communicator.engine")

_MB = 1024 * 1024


def _mb(n: int) -> str:
    return f"{n / _MB:.1f}" if n < 10 * _MB else str(n // _MB)


def _free(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:  # the folder itself may be what is missing
        return None


def storage_problem(ctx: TickContext, err: BaseException, needed_bytes: int) -> int | None:
    """The errno to wait on when ``err`` means "the results disk cannot take them now"."""
    code = storage_errno(err)
    if code is None and needed_bytes and isinstance(err, TransferError):
        free = _free(ctx.settings.results_dir)
        if free is not None and free < needed_bytes:
            code = errno.ENOSPC
    return code


def wait_reason(ctx: TickContext, code: int | None, needed_bytes: int) -> str:
    """``waiting: results disk full (needs N MB, M MB free)``, or ``... not writable``."""
    results = ctx.settings.results_dir
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "results disk full" if code == errno.ENOSPC else "results disk quota exceeded"
    else:
        what = f"results folder {results} not writable"
    facts = []
    if needed_bytes:
        facts.append(f"needs {_mb(needed_bytes)} MB")
    free = _free(results)
    if free is not None:
        facts.append(f"{_mb(free)} MB free")
    return f"waiting: {what}" + (f" ({', '.join(facts)})" if facts else "")


def wait_for_storage(
    ctx: TickContext, case: CaseRecord, err: BaseException, code: int | None, needed_bytes: int
) -> None:
    """Note why ``case`` waits and when it is tried again (logged with detail once)."""
    waits = case.storage_waits + 1
    retry_at = ctx.now + ctx.health.backoff.delay(waits)
    reason = wait_reason(ctx, code, needed_bytes)
    ctx.report.errors.append(f"case {case.id}: {reason}")
    if waits == 1:
        log.warning(
            "case %s: %s; the results stay on the far side, next try at %s (%s)",
            case.id,
            reason,
            f"{retry_at:%Y-%m-%d %H:%M:%S}",
            error_text(err),
        )
    else:
        log.info("case %s: still %s (%d tries)", case.id, reason, waits)
    note_case(ctx, case, reason, storage_waits=waits, last_error=reason, next_attempt_at=retry_at)
