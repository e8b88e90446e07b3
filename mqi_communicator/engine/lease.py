"""The lease an engine holds on a case while it works on it (upload+submit, download).

Only engines that share their database use leases (PostgreSQL; ``settings.exclusive``
is False). An exclusive engine (SQLite and its lock file) is alone: it never sets one.

- The claim takes the lease in its own transaction; another engine takes it
  (:meth:`~mqi_communicator.persistence.Store.take_lease`) before it recovers a
  ``submitting`` case or downloads a ``retrieving`` one.
- While the step runs, a :class:`LeaseKeeper` thread renews it every ``ttl/3``: one
  short transaction per renewal, no lock held across the transfer. A renewal proves the
  engine is alive; the transfer itself is bounded by ``transfer_timeout_s``.
- The step's end ends it (expires it now; a status change erases it). A lease that is
  not renewed expires after ``lease_ttl_s`` by the DATABASE's clock, so engines whose
  clocks differ still agree; only then may another engine take the case over.
- A ``submitting`` case with no lease at all (written before leases existed) is taken
  over only after ``submit_grace`` without change, which the config keeps longer than
  an upload plus a submit can take.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from types import TracebackType

from ..persistence import CaseRecord, Store
from .runtime import TickContext

__all__ = ["LeaseKeeper", "keep_lease", "new_engine_id", "take_over"]

log = logging.getLogger("mqi_communicator.engine")

#: ``cases.lease_owner`` is String(100).
_OWNER_MAX = 100


def new_engine_id() -> str:
    """A fresh id for one engine: host name, process id and a random part.

    The random part keeps two engines of one process (tests, or a restart that reuses a
    pid) apart.
    """
    tail = f":{os.getpid()}:{secrets.token_hex(4)}"
    return socket.gethostname()[: _OWNER_MAX - len(tail)] + tail


class LeaseKeeper:
    """Renews one case's lease from a timer thread while a step runs; ends it at exit.

    Inactive (no thread, no writes) when ``owner`` is None: an exclusive engine.
    """

    def __init__(self, store: Store, case_id: int, owner: str | None, ttl_s: float) -> None:
        """Keep ``owner``'s lease on ``case_id`` (already taken by claim or take_lease)."""
        self._store = store
        self._case_id = case_id
        self._owner = owner
        self._ttl_s = ttl_s
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease in another engine's hands."""
        return self._lost.is_set()

    def still_ours(self) -> bool:
        """Renew now and say whether the lease is still ours (True when inactive).

        Called before an irreversible step (the submit): a takeover since the last
        timer renewal is seen here rather than up to ``ttl/3`` later.
        """
        if self._owner is None:
            return True
        if not self.lost and not self._renew():
            self._lost.set()
        return not self.lost

    def __enter__(self) -> LeaseKeeper:
        if self._owner is not None:
            self._thread = threading.Thread(
                target=self._run, name=f"lease-case-{self._case_id}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owner is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._store.release_lease(self._case_id, self._owner)
        except Exception as err:  # the lease then simply expires; nothing else depends on it
            log.warning("case %s: could not end its lease: %s", self._case_id, err)

    def _renew(self) -> bool:
        assert self._owner is not None
        return self._store.renew_lease(self._case_id, self._owner, self._ttl_s)

    def _run(self) -> None:
        while not self._stop.wait(self._ttl_s / 3):
            try:
                if not self._renew():
                    self._lost.set()
                    log.warning(
                        "case %s: lease lost to another engine; its outcome will be dropped",
                        self._case_id,
                    )
                    return
            except Exception as err:
                # A database hiccup: try again next interval. If it lasts, the lease
                # expires, which is the designed answer to an engine that cannot renew.
                log.warning("case %s: lease renewal failed: %s", self._case_id, err)


def keep_lease(ctx: TickContext, case_id: int) -> LeaseKeeper:
    """The keeper of this engine's lease on ``case_id`` (inactive on an exclusive engine)."""
    owner = None if ctx.settings.exclusive else ctx.engine_id
    return LeaseKeeper(ctx.store, case_id, owner, ctx.settings.lease_ttl_s)


def take_over(
    ctx: TickContext, case: CaseRecord, *, grace_without_lease: bool
) -> CaseRecord | None:
    """Take ``case``'s lease so this engine may work on it; None if it must not.

    An exclusive engine needs no lease. Otherwise the database decides: a live lease of
    another engine refuses; an expired or ended one is taken. A case with no lease at
    all (rows written before leases existed) is taken, when ``grace_without_lease``,
    only after ``submit_grace`` without change: without a lease nothing tells a live
    upload from a dead one except time.
    """
    if ctx.settings.exclusive:
        return case
    no_lease = case.lease_owner is None
    if (
        grace_without_lease
        and no_lease
        and ctx.now - case.status_updated_at < ctx.settings.submit_grace
    ):
        return None
    return ctx.store.take_lease(
        case.id, ctx.engine_id, ctx.settings.lease_ttl_s, expected_version=case.version
    )
