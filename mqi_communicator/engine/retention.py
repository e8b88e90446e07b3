"""Remote retention: remove an ended case's folder on the GPU server, as configured.

``engine.remote_retention`` says what happens to ``<remote_dir>`` and its marker
directory ``<remote_dir>.mqi/`` once a case ended:

* ``keep_failed`` (default): removed after a verified retrieval (the case is
  ``completed``, which only a verified download leads to); a failed or cancelled
  case's folder is kept for diagnosis (``cases log`` reads its ``job.log``);
* ``delete``: removed for every ended case;
* ``keep``: never removed (the operator cleans up).

The removal itself (two ``rm -rf`` over the host's transport, up to 10 minutes each on
a slow far side) runs beside the tick (:func:`~.transfers.run_beside`, holding the case's
key), so a host that hangs stalls no other case; the case is marked settled by that job.

A removal waits ``engine.remote_retention_grace_s`` (default 10 minutes) after the case
ended, so ``cases log`` (and a ``--follow`` reaching the end) still reads the job log.
The markers are the evidence that a job is gone, so a folder is removed only when the
case has ended AND no GPU that is ``assigned`` or ``zombie`` still holds a job in that
directory (a zombie keeps its job's directory until it is released on evidence). The
case folder goes first, the markers last. Folders of legacy jobs (not ours) and of
cases that ended before this version are never touched.

:class:`RetentionSweeper` runs from the tick, after every tick that moved something
(a case may just have ended) and at least every ``SWEEP_EVERY_S``: it reads the ended
cases whose folder is not settled yet (``cases.remote_done``), so a removal that failed
(host down, ``rm`` refused), or one deferred while a GPU still held the job, is tried
again at a later sweep, also after a restart. A failure is logged and never changes the
case. The policy applies when the sweep settles a case: changing it later does not
revisit settled cases.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from ..errors import HostUnreachableError, MqiError
from ..persistence import CaseRecord
from ..persistence.store_retention import mark_remote_done, pending_remote_cleanup
from ..statemachine import CaseState, GpuState
from .runtime import HostRuntime, TickContext
from .transfers import run_beside

__all__ = ["SWEEP_EVERY_S", "RetentionSweeper", "wants_removal"]

log = logging.getLogger("mqi_communicator.engine")

SWEEP_EVERY_S = 60.0
#: Cases settled per sweep at most (the rest wait for the next one).
_BATCH = 50
_REMOVE_TIMEOUT_S = 600.0


def wants_removal(policy: str, case: CaseRecord) -> bool:
    """Whether ``policy`` removes ended ``case``'s remote folder."""
    if case.job_origin == "legacy":
        return False  # the original system's folder: not ours to remove
    if policy == "delete":
        return True
    return policy == "keep_failed" and case.status is CaseState.COMPLETED


class RetentionSweeper:
    """Settles ended cases' remote folders, a batch per sweep (see the module docstring)."""

    def __init__(self, policy: str, *, grace_s: float = 600.0) -> None:
        self.policy = policy
        self.grace = timedelta(seconds=grace_s)
        self._next: datetime | None = None

    def sweep(self, ctx: TickContext) -> int:
        """Settle what is due (after a busy tick, else every ``SWEEP_EVERY_S``).

        Returns how many cases it settled in the tick (kept folders); removals settle
        their case from beside the tick when they end.
        """
        # Due after a tick that moved something (a case may have just ended), else timed.
        due = self._next is None or ctx.now >= self._next or ctx.report.busy
        if self.policy == "keep" or not due:
            return 0
        self._next = ctx.now + timedelta(seconds=SWEEP_EVERY_S)
        pending = ctx.store.read(lambda s: pending_remote_cleanup(s, _BATCH))
        if not pending:
            return 0
        held = {
            g.job_dir
            for g in ctx.store.list_gpus()
            if g.job_dir and g.status in (GpuState.ASSIGNED, GpuState.ZOMBIE)
        }
        done = 0
        for case in pending:
            try:
                done += self._settle(ctx, case, held)
            except Exception:
                # Never let one case's cleanup stop the tick; it is tried again next sweep.
                log.exception("case %s: remote retention failed; will try again", case.id)
        return done

    def _settle(self, ctx: TickContext, case: CaseRecord, held: set[str]) -> bool:
        remote = case.remote_dir
        assert remote is not None  # pending_remote_cleanup selects only those
        if not wants_removal(self.policy, case):
            return self._mark(ctx, case, f"remote folder {remote} kept ({self.policy})")
        marker_dir = f"{remote}.mqi"
        if ctx.now - case.status_updated_at < self.grace:
            return False  # ended a moment ago: its job log is still being read
        if remote in held or marker_dir in held:
            return False  # a GPU still holds this job: its markers are evidence
        host = ctx.host_of_case(case)
        if host is None:
            return self._mark(ctx, case, f"remote folder {remote} kept: host not configured")
        if ctx.health.is_down(host.name, ctx.now):
            return False
        # Not started (no room, stopping, or its removal still runs): a later sweep.
        run_beside(ctx, case.id, host.name, partial(self._remove, case, host), lane="cleanup")
        return False

    def _remove(self, case: CaseRecord, host: HostRuntime, ctx: TickContext) -> None:
        remote = case.remote_dir or ""
        try:
            host.transport.remove_tree(remote, timeout=_REMOVE_TIMEOUT_S)
            host.transport.remove_tree(f"{remote}.mqi", timeout=_REMOVE_TIMEOUT_S)
        except HostUnreachableError as err:
            ctx.host_down(host.name, err)
            return
        except (MqiError, ValueError) as err:
            log.warning("case %s: removing %s failed (%s); will try again", case.id, remote, err)
            return
        log.info("case %s: removed remote folder %s (%s)", case.id, remote, self.policy)
        self._mark(ctx, case, f"remote folder {remote} removed ({self.policy})")

    @staticmethod
    def _mark(ctx: TickContext, case: CaseRecord, detail: str) -> bool:
        remote = case.remote_dir or ""
        return ctx.store.write(lambda s: mark_remote_done(s, case.id, remote, ctx.now, detail))
