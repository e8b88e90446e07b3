"""Operator operations on cases: a cancel, and reading a case's job log.

The tables decide what a cancel does from the case's state (:mod:`.statemachine.tables`):
it ends a waiting or retrieving case at once (``cancel``) and only flags one whose job
may run (``request_cancel``: the engine kills it and frees the GPU on evidence). Nothing
here branches on a state: the store fires the first trigger the machine allows, in one
transaction. (A retry lives in :mod:`.engine.retry_retrieval`: it may ask the host.)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .engine.runtime import HostRuntime
from .errors import ConfigError, NotFoundError
from .persistence import CaseRecord, Store
from .remote.job.log import LogChunk, read_job_log
from .statemachine import CaseTrigger, Evidence, EvidenceKind

__all__ = ["cancel_case", "read_case_log"]


def cancel_case(store: Store, case_id: int, now: datetime) -> CaseRecord:
    """Cancel a case, or flag it for the engine when its job may still run.

    Raises:
        InvalidTransitionError: the case already ended.
        NotFoundError: no such case.
    """
    label = store.get_case(case_id).label  # the evidence names the attempt's job
    case, _ = store.apply(
        case_id,
        (CaseTrigger.CANCEL, CaseTrigger.REQUEST_CANCEL),  # the table picks by state
        None,
        None,
        evidence=Evidence(EvidenceKind.OPERATOR, label, now, detail=CaseTrigger.CANCEL),
        now=now,
        detail="cancel by operator",
    )
    assert case is not None
    return case


def read_case_log(
    store: Store,
    hosts: Mapping[str, HostRuntime],
    case_id: int,
    *,
    lines: int,
    offset: int | None,
    max_bytes: int,
) -> LogChunk:
    """The job log of the case's current (or last) attempt, read over its host.

    Raises:
        NotFoundError: no such case, or it has no job directory (not started yet).
        ConfigError: the case's host is no longer configured.
        HostUnreachableError: the host could not be asked.
    """
    case = store.get_case(case_id)
    if case.remote_dir is None or case.host is None:
        raise NotFoundError(
            f"case {case_id} has no job yet ({case.status.value}); "
            "its log exists once the job is submitted"
        )
    host = hosts.get(case.host)
    if host is None:
        raise ConfigError(f"case {case_id} ran on host {case.host!r}, which is not configured")
    return read_job_log(
        host.transport,
        case.remote_dir,
        offset=offset,
        lines=lines,
        max_bytes=max_bytes,
        legacy=case.attempt_token is None,
    )
