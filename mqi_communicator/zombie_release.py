"""The operator's audited way out for a zombie GPU whose job can no longer be observed.

A zombie leaves on the engine's evidence (``recover``, guard ``termination_proven``) or,
when its host is gone for good, on an operator's word: trigger ``operator_release``,
guard ``operator_attested``, evidence ``operator_attested`` carrying who (the OS user
and host), when and why. The two paths never mix: engine evidence cannot pass
``operator_attested`` and the operator's word cannot pass ``termination_proven``.
"""

from __future__ import annotations

import getpass
import logging
import socket
from datetime import datetime

from .errors import InvalidTransitionError
from .persistence import GpuRecord, Store
from .statemachine import Evidence, EvidenceKind, GpuTrigger, legal_triggers

__all__ = ["os_actor", "release_checklist", "release_checks", "release_zombie"]

log = logging.getLogger("mqi_communicator.service")


def os_actor() -> str:
    """``user@host`` of whoever runs this process (works on Windows too)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor the user database
        user = "unknown-user"
    return f"{user}@{socket.gethostname()}"


def release_checks(gpu: GpuRecord) -> list[str]:
    """What to make sure of on the host before releasing zombie ``gpu`` (one line each).

    The one list both the CLI (:func:`release_checklist`) and the web console show.
    """
    where = f"host {gpu.host}" if gpu.host else "its host"
    checks = [
        f"on {where}: no scheduler task with label "
        f"{gpu.job_label or '(none recorded)'!r} (job id {gpu.job_id or 'unknown'}): "
        "`pueue status` / `squeue` there",
        "no process of it is alive (`ps -ef`; our own jobs: the process group in <dir>/.mqi/pgid)",
        f"its directory: {gpu.job_dir or '(none recorded)'}",
    ]
    if gpu.quarantined_case_id is not None:
        checks.append(f"the case whose job it was: {gpu.quarantined_case_id}")
    return checks


def release_checklist(gpu: GpuRecord) -> str:
    """What to check on the host before releasing zombie ``gpu`` on one's own word (CLI)."""
    lines = [
        f"releasing zombie GPU {gpu.name} frees it on your word alone; it needs "
        "--confirm-job-gone and a non-empty --reason.",
        "First make sure its job is gone:",
        *(f"  - {check};" for check in release_checks(gpu)),
        f'Then: mqi-communicator gpus release {gpu.name} --confirm-job-gone --reason "..."',
    ]
    return "\n".join(lines)


def release_zombie(
    store: Store,
    name: str,
    now: datetime,
    *,
    reason: str,
    confirm_job_gone: bool,
    actor: str | None = None,
) -> GpuRecord:
    """Free zombie ``name`` on an operator's attested word (see the module docstring).

    Raises:
        InvalidTransitionError: the GPU is not a zombie.
        ValueError: ``confirm_job_gone`` is not True or ``reason`` is blank; the message
            is :func:`release_checklist`.
        NotFoundError: no GPU ``name``.
    """
    gpu = store.get_gpu(name)
    if GpuTrigger.OPERATOR_RELEASE not in legal_triggers("gpu", gpu.status):
        raise InvalidTransitionError(
            "gpu",
            gpu.status.value,
            GpuTrigger.OPERATOR_RELEASE,
            "only a zombie can be released on the operator's word",
        )
    why = reason.strip()
    if confirm_job_gone is not True or not why:
        raise ValueError(release_checklist(gpu))
    who = (actor or "").strip() or os_actor()
    evidence = Evidence(
        EvidenceKind.OPERATOR_ATTESTED,
        gpu.job_label,
        now,
        job_id=gpu.job_id,
        detail=why,
        actor=who,
    )
    case = f" (job of case {gpu.quarantined_case_id})" if gpu.quarantined_case_id else ""
    _, released = store.apply(
        None,
        None,
        name,
        GpuTrigger.OPERATOR_RELEASE,
        evidence=evidence,
        now=now,
        detail=f"released on the word of {who}{case}: {why}",
    )
    assert released is not None
    log.warning("zombie GPU %s released on the word of %s: %s", name, who, why)
    return released
