"""Registering a case folder: once per content, and again when it is dropped again.

A folder's latest case decides (``cases`` may hold several rows of one path, at most
one of them live: ``uq_cases_live_path``):

* no case: a new case;
* a live case: that case (nothing new while it runs);
* an ended case (completed, failed, cancelled) and the folder holds the content it was
  registered with (:mod:`.intake.fingerprint`): that case, so a folder left in place is
  not run again at every scan nor after a restart;
* an ended case and other content: a NEW case. The old case, its audit trail and its
  results folder stay untouched (results of a later case go to another folder, see
  :mod:`.engine.results_place`), and the old case can no longer be retried (its
  content is gone): :func:`refuse_superseded`.

The decision reads only the database and the folder, so a restart decides the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .engine.retrieve_step import upload_exclusions
from .errors import CaseContentError, InvalidTransitionError
from .intake.fingerprint import content_changed, fingerprint
from .intake.refusals import RefusalLog
from .intake.scan import case_problem
from .intake.tracker import Seen
from .persistence import CaseRecord, Store
from .statemachine import TERMINAL_CASE_STATES, CaseTrigger, Evidence, EvidenceKind

__all__ = ["intake_seen", "refuse_superseded", "register_folder"]

log = logging.getLogger("mqi_communicator.service")


def intake_seen(store: Store, folder: Path, now: datetime) -> Seen:
    """What intake should do with ``folder`` (see :class:`~.intake.tracker.Seen`)."""
    latest = store.find_case(str(folder))
    if latest is None:
        return Seen.NEW
    if latest.status not in TERMINAL_CASE_STATES:
        return Seen.LIVE
    return Seen.NEW if _dropped_again(folder, latest, now) else Seen.DONE


def _dropped_again(folder: Path, ended: CaseRecord, now: datetime) -> bool:
    return folder.is_dir() and content_changed(
        folder, recorded=ended.fingerprint, registered_at=ended.created_at, now=now
    )


def register_folder(
    store: Store,
    path: Path,
    clock: Callable[[], datetime],
    *,
    results_subdir: str,
    notices: RefusalLog | None = None,
) -> CaseRecord:
    """Register ``path`` as the module docstring says; returns the case it belongs to.

    An empty or unreadable folder is registered and at once recorded as ``failed``
    with the reason (and a line queued on ``notices`` for the ``run`` console).

    Raises:
        CaseContentError: ``path`` is not a directory.
    """
    folder = path.absolute()
    existing = store.find_case(str(folder))
    if existing is not None and (
        existing.status not in TERMINAL_CASE_STATES or not folder.is_dir()
    ):
        return existing
    if not folder.is_dir():
        raise CaseContentError(f"{folder}: not a directory; a case is a folder")
    if existing is not None and not _dropped_again(folder, existing, clock()):
        return existing
    content = fingerprint(folder)
    problem = case_problem(folder, upload_exclusions(results_subdir))
    now = clock()
    case, created = store.register_case(
        str(folder), now, fingerprint=content, after=existing.id if existing else None
    )
    if not created:
        return case
    if existing is not None:
        log.info(
            "case %s: %s was dropped again after case %s ended; a new case",
            case.id,
            folder,
            existing.id,
        )
    if problem is None:
        log.info("case %s registered: %s", case.id, folder)
        return case
    log.warning("case %s (%s) cannot run: %s", case.id, folder, problem)
    if notices is not None:
        notices.queue(f"case {case.id} ({folder.name}) failed at intake: {problem}")
    failed, _ = store.apply(
        case.id,
        CaseTrigger.FAIL,
        None,
        None,
        evidence=Evidence(EvidenceKind.INTAKE, None, now, detail=problem),
        now=now,
        detail=problem,
        failure_reason=problem,
    )
    assert failed is not None
    return failed


def refuse_superseded(store: Store, case_id: int) -> None:
    """A case whose folder became a newer case cannot run again: its content is gone.

    Raises:
        InvalidTransitionError: a newer case of the same folder exists.
        NotFoundError: no such case.
    """
    case = store.get_case(case_id)
    latest = store.find_case(case.path)
    if latest is not None and latest.id != case.id:
        raise InvalidTransitionError(
            "case",
            case.status.value,
            CaseTrigger.RETRY,
            f"its folder was dropped again as case {latest.id}; retry that case instead",
        )
