"""The store: the only way the rest of the package reads or writes the database.

Every write is one transaction. On SQLite it starts with ``BEGIN IMMEDIATE`` (one writer
at a time, waiting up to the busy timeout); on PostgreSQL rows are locked with
``SELECT ... FOR UPDATE`` (``SKIP LOCKED`` when claiming a GPU). The ORM's version
columns add an optimistic check: an update that finds another version fails with
:class:`ConflictError` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..errors import ConflictError, SchemaMismatchError
from ..statemachine import CaseState, CaseTrigger, Evidence, GpuTrigger
from . import store_claim as claims
from . import store_gpu_writes as gpu_writes
from . import store_lease as leases
from . import store_reads as reads
from . import store_writes as writes
from .engine_setup import display_url, make_engine, sqlite_file, write_engine
from .records import CaseRecord, GpuRecord, TransitionRecord
from .schema_check import check_schema

__all__ = ["Store"]

T = TypeVar("T")

# PostgreSQL SQLSTATEs a writer may simply retry: serialization failure, deadlock.
_RETRYABLE_PG = {"40001", "40P01"}


def _retryable(err: DBAPIError) -> bool:
    code = getattr(err.orig, "sqlstate", None)
    if code in _RETRYABLE_PG:
        return True
    return "database is locked" in str(err.orig)


class Store:
    """Transactional access to cases, GPUs and the audit trail.

    Use :meth:`open`; it refuses a database whose schema is not at this code's head.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        """Wrap an engine made by :func:`make_engine`. Prefer :meth:`open`."""
        self._engine = engine
        self._writer = write_engine(engine)
        self.url = url

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to ``url`` and check its schema revision.

        Raises:
            SchemaMismatchError: behind head, ahead of it, or not versioned at all; or
                a SQLite file that does not exist (opening it would leave an empty
                file that the engine then refuses to use).
        """
        db = sqlite_file(url)
        if db is not None and not db.exists():
            raise SchemaMismatchError(
                f"no database at {db}: `mqi-communicator run` creates it, or "
                f"`mqi-communicator db upgrade --db {display_url(url)}`"
            )
        engine = make_engine(url)
        shown = display_url(url)
        try:
            check_schema(engine, shown)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, shown)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Release every connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as s, s.begin():
            yield s

    def _write(self, work: Callable[[Session], T]) -> T:
        try:
            with Session(self._writer, expire_on_commit=False) as s, s.begin():
                return work(s)
        except StaleDataError as err:
            raise ConflictError(f"a row changed under us: {err}") from err
        except IntegrityError as err:
            raise ConflictError(f"a constraint refused the write: {err.orig}") from err
        except DBAPIError as err:
            if _retryable(err):
                raise ConflictError(f"database busy: {err.orig}") from err
            raise

    def read(self, query: Callable[[Session], T]) -> T:
        """Run ``query(session)`` in one read transaction (one consistent snapshot).

        For the persistence package's query modules (overview, outbox); they return
        records, never ORM rows.
        """
        with self._read() as s:
            return query(s)

    def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in one write transaction (see :meth:`_write`'s errors).

        For the persistence package's own write functions that change no state column
        (the notification outbox); state changes go through :meth:`apply` and friends.
        """
        return self._write(work)

    # -- reads -------------------------------------------------------------------------

    def get_case(self, case_id: int) -> CaseRecord:
        """The case with ``case_id`` (:class:`NotFoundError` if none)."""
        with self._read() as s:
            return reads.get_case(s, case_id)

    def find_case(self, path: str) -> CaseRecord | None:
        """The latest case registered for ``path``, if any."""
        with self._read() as s:
            return reads.find_case(s, path)

    def list_cases(
        self,
        statuses: Iterable[CaseState] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[CaseRecord]:
        """Cases in id order, optionally filtered by status."""
        with self._read() as s:
            return reads.list_cases(s, statuses, limit=limit, offset=offset)

    def page_cases(
        self,
        *,
        state: CaseState | None = None,
        search: str = "",
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[CaseRecord]:
        """One page of cases, newest first (see :func:`.store_reads.page_cases`)."""
        with self._read() as s:
            return reads.page_cases(s, state=state, search=search, before_id=before_id, limit=limit)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only transaction for the aggregate queries of :mod:`.store_stats`.

        It never takes the write lock, so it runs beside an engine on SQLite (WAL).
        """
        with self._read() as s:
            yield s

    def count_by_status(self) -> dict[CaseState, int]:
        """Number of cases per state."""
        with self._read() as s:
            return reads.count_by_status(s)

    def get_gpu(self, name: str) -> GpuRecord:
        """The GPU named ``name`` (:class:`NotFoundError` if none)."""
        with self._read() as s:
            return reads.get_gpu(s, name)

    def list_gpus(self) -> list[GpuRecord]:
        """Every GPU in name order."""
        with self._read() as s:
            return reads.list_gpus(s)

    def history(
        self, *, case_id: int | None = None, gpu_name: str | None = None, limit: int | None = None
    ) -> list[TransitionRecord]:
        """Audit rows in id order (the latest ``limit`` if given)."""
        with self._read() as s:
            return reads.history(s, case_id=case_id, gpu_name=gpu_name, limit=limit)

    # -- writes ------------------------------------------------------------------------

    def register_case(
        self,
        path: str,
        now: datetime,
        *,
        fingerprint: str | None = None,
        after: int | None = None,
    ) -> tuple[CaseRecord, bool]:
        """Register ``path`` as a new ``submitted`` case; idempotent.

        Args:
            path: The case folder.
            now: Registration time.
            fingerprint: The folder's content fingerprint (intake/fingerprint.py).
            after: The ended case of ``path`` this one supersedes (a re-drop); see
                :func:`.store_writes.register_case`.

        Returns:
            The case and True if this call created it; the latest case and False.
        """
        try:
            return self._write(
                lambda s: writes.register_case(s, path, now, fingerprint=fingerprint, after=after)
            )
        except ConflictError:
            # Lost a race on the unique path: the winner's row is the answer.
            found = self.find_case(path)
            if found is None:
                raise
            return found, False

    def sync_gpus(self, gpus: Sequence[tuple[str, str | None]], now: datetime) -> None:
        """Add the ``(name, host)`` GPUs not yet known, as ``available``. Never deletes."""
        try:
            self._write(lambda s: gpu_writes.sync_gpus(s, gpus, now))
        except ConflictError:
            # Another process added some of them at the same moment: add the rest.
            self._write(lambda s: gpu_writes.sync_gpus(s, gpus, now))

    def claim(
        self,
        case_id: int,
        now: datetime,
        plan: claims.ClaimPlan,
        candidates: Sequence[str] | None = None,
        *,
        lease: tuple[str, float] | None = None,
    ) -> tuple[CaseRecord, GpuRecord] | None:
        """Atomically give a free GPU to a ``submitted`` case.

        Args:
            case_id: The case.
            now: The time of the claim.
            plan: ``(case, gpu) -> (job label, remote dir)``, called under the lock.
            candidates: GPU names allowed, in order of preference (None: any).
            lease: ``(owner, ttl_s)``: the claimer also takes the case's lease, in the
                same transaction (engines sharing a database; see :meth:`take_lease`).

        Returns:
            The moved case and GPU, or None when no GPU is free or the case is no
            longer ``submitted``.
        """
        return self._write(lambda s: claims.claim(s, case_id, now, plan, candidates, lease))

    def apply(
        self,
        case_id: int | None,
        case_trigger: CaseTrigger | tuple[CaseTrigger, ...] | None,
        gpu_name: str | None,
        gpu_trigger: GpuTrigger | None,
        *,
        evidence: Evidence | None,
        now: datetime,
        detail: str = "",
        failure_reason: str | None = None,
        job_id: str | None = None,
        retry_at: datetime | None = None,
        kill_reason: str | None = None,
        expected_case_version: int | None = None,
        expected_attempt: int | None = None,
        expected_label: str | None = None,
    ) -> tuple[CaseRecord | None, GpuRecord | None]:
        """Apply one step (case and/or GPU transition) and its audit rows atomically.

        The fields the fired table rows declare are written with the states, from the
        rows themselves and the inputs given here (``failure_reason``, ``job_id``,
        ``retry_at`` for a requeue, ``kill_reason`` for a kill request).

        ``case_trigger`` may be alternatives, in order: the first the machine allows
        from the case's state is fired (an operator's cancel ends a waiting case, or
        only flags a running one), in the same transaction.

        The outcome of a remote action passes the attempt and label it was started for
        as ``expected_attempt``/``expected_label`` (None: not checked): the step is
        written only while the case still holds that attempt and label. Without a case,
        ``expected_label`` is compared with the GPU's job label.

        Raises:
            StaleOutcomeError: the case (or GPU) holds another attempt or label now;
                nothing written.
            InvalidTransitionError: illegal trigger or mismatched halves; nothing written.
            GuardRejectedError: a guard refused (e.g. release without evidence).
            ConflictError: ``expected_case_version`` is stale, or a concurrent writer won.
            NotFoundError: no such case or GPU.
        """
        return self._write(
            lambda s: writes.apply_step(
                s,
                case_id,
                case_trigger,
                gpu_name,
                gpu_trigger,
                evidence=evidence,
                now=now,
                detail=detail,
                failure_reason=failure_reason,
                job_id=job_id,
                retry_at=retry_at,
                kill_reason=kill_reason,
                expected_case_version=expected_case_version,
                expected_attempt=expected_attempt,
                expected_label=expected_label,
            )
        )

    def update_case(
        self,
        case_id: int,
        now: datetime,
        *,
        detail: str,
        expected_attempt: int | None = None,
        expected_label: str | None = None,
        **fields: object,
    ) -> CaseRecord:
        """Set non-status case fields (progress, started_at, job_id, kill_*, ...).

        ``expected_attempt``/``expected_label`` as in :meth:`apply`.

        Raises:
            StaleOutcomeError: the case holds another attempt or label; nothing written.
        """
        return self._write(
            lambda s: writes.update_case(
                s,
                case_id,
                now,
                detail,
                fields,
                expected_attempt=expected_attempt,
                expected_label=expected_label,
            )
        )

    def update_gpu(
        self, name: str, now: datetime, *, detail: str, expected_label: str | None = None, **f: Any
    ) -> GpuRecord:
        """Set note fields of a GPU (see :func:`.store_gpu_writes.update_gpu`)."""
        write = partial(gpu_writes.update_gpu, name=name, now=now, detail=detail, fields=f)
        return self._write(lambda s: write(s, expected_label=expected_label))

    def set_gpu_offline(self, name: str, now: datetime, offline: bool) -> GpuRecord:
        """Operator: take a GPU out of the pool (now if idle, else after its job) or back."""
        return self._write(lambda s: gpu_writes.set_gpu_offline(s, name, now, offline))

    # -- leases (engines sharing a database; times are the database's) ----------------

    def take_lease(
        self, case_id: int, owner: str, ttl_s: float, *, expected_version: int
    ) -> CaseRecord | None:
        """Take a case's lease for ``ttl_s`` seconds if nobody else holds a live one.

        Args:
            case_id: The case.
            owner: The engine's id (``engine.lease.new_engine_id()``).
            ttl_s: Seconds until the lease expires unless renewed (database clock).
            expected_version: The case's version as the caller saw it: the lease is
                taken only if the case has not changed since (leases do not bump it).

        Returns:
            The case holding the new lease, or None (someone's lease is live, or the
            case changed); nothing is written then.
        """
        return self._write(lambda s: leases.take_lease(s, case_id, owner, ttl_s, expected_version))

    def renew_lease(self, case_id: int, owner: str, ttl_s: float) -> bool:
        """Extend ``owner``'s lease to now + ``ttl_s``; False if ``owner`` lost it."""
        return self._write(lambda s: leases.renew_lease(s, case_id, owner, ttl_s))

    def release_lease(self, case_id: int, owner: str) -> bool:
        """End ``owner``'s lease now (expire it; a status change erases it anyway)."""
        return self._write(lambda s: leases.release_lease(s, case_id, owner))

    def database_time(self) -> datetime:
        """The database server's clock (what lease expiry is measured against)."""
        with self._read() as s:
            return leases.db_now(s)
