"""A case's lease: which engine is working on it right now, and until when.

Engines that share a database (PostgreSQL) mark the case they are uploading, submitting,
recovering or downloading with a lease (``cases.lease_owner``/``lease_expires_at``). The
holder renews it while it works; another engine may take the case over only once the
lease is absent or has expired.

Times are the DATABASE's clock, read inside the same transaction (PostgreSQL ``now()``,
SQLite's ``'now'``): the engines' PCs may disagree about the time, the server they share
does not disagree with itself. Lease writes are plain ``UPDATE ... WHERE`` statements
(one short transaction each, the condition is the compare-and-set) that do not bump the
case's version: a lease is coordination, not case state, so renewing it never makes
another writer's version check fail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from .models import Case
from .records import CaseRecord, case_record

__all__ = ["db_now", "lease_until", "release_lease", "renew_lease", "take_lease"]


def db_now(s: Session) -> datetime:
    """The database server's current time, aware UTC."""
    bind = s.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite runs in this process: its clock is this machine's, to the millisecond.
        text = s.execute(select(func.strftime("%Y-%m-%d %H:%M:%f", "now"))).scalar_one()
        return datetime.fromisoformat(str(text)).replace(tzinfo=UTC)
    moment = s.execute(select(func.now())).scalar_one()
    assert isinstance(moment, datetime)
    return moment.astimezone(UTC)


def lease_until(s: Session, ttl_s: float) -> datetime:
    """When a lease taken or renewed now (database time) expires."""
    return db_now(s) + timedelta(seconds=ttl_s)


def _set_lease(
    s: Session, case_id: int, owner: str, ttl_s: float, *conds: ColumnElement[bool]
) -> bool:
    until = lease_until(s, ttl_s)
    stmt = (
        update(Case)
        .where(Case.id == case_id, *conds)
        .values(lease_owner=owner, lease_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    return s.execute(stmt).rowcount == 1  # type: ignore[attr-defined,no-any-return]


def take_lease(
    s: Session, case_id: int, owner: str, ttl_s: float, expected_version: int
) -> CaseRecord | None:
    """Take the lease of a case as it was seen (``expected_version``), if nobody holds it.

    Succeeds when the lease is absent, expired, or already ``owner``'s, and the case is
    still at ``expected_version`` (so still in the state, attempt and label the caller
    saw). Returns the case (with the new lease), or None and writes nothing.
    """
    now = db_now(s)
    free = or_(
        Case.lease_owner.is_(None),
        Case.lease_owner == owner,
        Case.lease_expires_at.is_(None),
        Case.lease_expires_at <= now,
    )
    if not _set_lease(s, case_id, owner, ttl_s, Case.version == expected_version, free):
        return None
    return case_record(s.scalars(select(Case).where(Case.id == case_id)).one())


def renew_lease(s: Session, case_id: int, owner: str, ttl_s: float) -> bool:
    """Extend ``owner``'s lease by ``ttl_s`` from now; False if ``owner`` no longer holds it.

    An expired lease nobody else took is still ``owner``'s and is renewed: the holder was
    slow, not replaced.
    """
    return _set_lease(s, case_id, owner, ttl_s, Case.lease_owner == owner)


def release_lease(s: Session, case_id: int, owner: str) -> bool:
    """End ``owner``'s lease now; False (and nothing written) if ``owner`` does not hold it.

    The lease is expired rather than erased: ``lease_owner`` keeps who last worked on the
    case, and an ended lease lets any engine take the case at once, while a case with no
    lease at all (rows from before leases) waits out the takeover grace.
    """
    stmt = (
        update(Case)
        .where(Case.id == case_id, Case.lease_owner == owner)
        .values(lease_expires_at=db_now(s))
        .execution_options(synchronize_session=False)
    )
    return s.execute(stmt).rowcount == 1  # type: ignore[attr-defined,no-any-return]
