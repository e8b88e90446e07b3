"""An operator's retry: download again when only the retrieval failed, else rerun.

A case that failed while ``retrieving`` (its ``fail`` audit row comes from that state)
had a job that succeeded: its results may still be in ``<remote_dir>/<results_subdir>``
on the far side. Then the retry is ``retry_retrieval`` (``failed`` -> ``retrieving``,
same attempt, label and remote directory: no new job), and the engine downloads and
verifies them as usual. When they are gone (the folder is missing or empty) or the case
cannot have any (a legacy job, no remote directory), the retry is the plain ``retry``:
a new attempt runs the job again. When the host cannot be asked right now, the download
is tried: if the results turn out to be gone the case fails again, and the next retry
reruns it. Which one happened is in the audit row's detail, and ``cases retry`` says it.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from datetime import datetime

from ..config.engine import check_results_subdir
from ..errors import MqiError
from ..persistence import CaseRecord, Store
from ..statemachine import CaseState, CaseTrigger, Evidence, EvidenceKind
from .runtime import HostRuntime

__all__ = ["failed_in_retrieval", "results_remain", "retry_case"]

log = logging.getLogger("mqi_communicator.engine")

#: One short remote command (test + ls); generous for a slow login.
_CHECK_TIMEOUT_S = 60.0


def failed_in_retrieval(store: Store, case: CaseRecord) -> bool:
    """True when ``case`` is failed and the step that failed it left ``retrieving``."""
    if case.status is not CaseState.FAILED:
        return False
    moves = [
        t
        for t in store.history(case_id=case.id)
        if t.entity == "case" and t.trigger != "note" and t.to_state == CaseState.FAILED.value
    ]
    return bool(moves) and moves[-1].from_state == CaseState.RETRIEVING.value


def results_remain(host: HostRuntime, remote: str) -> bool | None:
    """True if ``remote`` is a non-empty folder on ``host``; None if it cannot be told."""
    quoted = shlex.quote(remote)
    script = f'[ -d {quoted} ] && [ -n "$(ls -A -- {quoted})" ]'
    try:
        result = host.transport.run(script, timeout=_CHECK_TIMEOUT_S)
    except MqiError as err:
        log.warning("cannot ask %s whether %s is still there: %s", host.name, remote, err)
        return None
    return result.exit_code == 0


def retry_case(
    store: Store,
    hosts: Mapping[str, HostRuntime],
    results_subdir: str,
    case_id: int,
    now: datetime,
) -> CaseRecord:
    """Retry a ``failed`` or ``cancelled`` case: download again or run again (see module).

    Raises:
        InvalidTransitionError: the case is not failed or cancelled.
        ConflictError: the case changed while we looked.
        NotFoundError: no such case.
    """
    case = store.get_case(case_id)
    trigger, detail = CaseTrigger.RETRY, "retried by operator"
    host = hosts.get(case.host) if case.host else None
    if (
        failed_in_retrieval(store, case)
        and case.job_origin != "legacy"
        and case.remote_dir is not None
        and host is not None
    ):
        remote = f"{case.remote_dir}/{check_results_subdir(results_subdir)}"
        there = results_remain(host, remote)
        where = f"{host.name}:{remote}"
        if there is None:
            trigger = CaseTrigger.RETRY_RETRIEVAL
            detail = (
                f"retried by operator: {host.name} cannot be asked now; downloading the "
                f"results of attempt {case.attempt} again (no new job) once it answers"
            )
        elif there:
            trigger = CaseTrigger.RETRY_RETRIEVAL
            detail = (
                f"retried by operator: results of attempt {case.attempt} still in {where}; "
                "downloading them again (no new job)"
            )
        else:
            detail = (
                f"retried by operator: results of attempt {case.attempt} are gone from "
                f"{where}; the job runs again as attempt {case.attempt + 1}"
            )
    # A download again stays with the attempt's label; a rerun gets a new one at claim.
    label = case.label if trigger is CaseTrigger.RETRY_RETRIEVAL else None
    moved, _ = store.apply(
        case.id,
        trigger,
        None,
        None,
        evidence=Evidence(EvidenceKind.OPERATOR, label, now, detail=trigger),
        now=now,
        detail=detail,
        expected_case_version=case.version,
    )
    assert moved is not None
    log.info("case %s: %s", case.id, detail)
    return moved
