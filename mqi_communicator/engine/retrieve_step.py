"""Bring a succeeded job's results home: download, verify, move into place atomically.

Results of case ``NAME`` land in ``<results_dir>/NAME``. The download goes to
``<results_dir>/.mqi-staging/case<id>_a<attempt>`` (itself verified and atomic), gets a
``.mqi-result.json`` stamp, and is then renamed into place; an older folder of the same
name is moved to ``<results_dir>/.mqi-previous/``. Every step checks what is already
done, so a crash at any point is finished by the next tick and never leaves a
half-written folder under ``<results_dir>/NAME``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import HostUnreachableError, MqiError, PermanentError
from ..persistence import CaseRecord
from ..statemachine.decide import Apply, decide_retrieval_error
from ..statemachine.evidence import Evidence, EvidenceKind
from .act import apply_case_step, note_case
from .lease import keep_lease, take_over
from .runtime import TickContext, case_view

__all__ = ["results_path", "retrieve"]

log = logging.getLogger("mqi_communicator.engine")
STAMP = ".mqi-result.json"


def results_path(results_dir: Path, case: CaseRecord) -> Path:
    """Where a case's results end up."""
    return results_dir / case.name


def _stamp_matches(folder: Path, case: CaseRecord) -> bool:
    try:
        data = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data.get("case_id") == case.id and data.get("attempt") == case.attempt)


def retrieve(ctx: TickContext, case: CaseRecord) -> None:
    """Advance one ``retrieving`` case as far as possible.

    With several engines, only the one holding the case's lease downloads it.
    """
    leased = take_over(ctx, case, grace_without_lease=False)
    if leased is None:
        return  # another engine is bringing these results home
    with keep_lease(ctx, case.id):
        _retrieve(ctx, leased)


def _retrieve(ctx: TickContext, case: CaseRecord) -> None:
    results_dir = ctx.settings.results_dir
    final = results_path(results_dir, case)
    staging = results_dir / ".mqi-staging" / f"case{case.id}_a{case.attempt}"
    if not _stamp_matches(final, case):
        if not staging.exists() and not _download(ctx, case, staging):
            return
        _stamp(staging, case)
        if final.exists():
            previous = results_dir / ".mqi-previous" / f"{case.name}.{ctx.now:%Y%m%dT%H%M%S}"
            previous.parent.mkdir(parents=True, exist_ok=True)
            final.replace(previous)
        staging.replace(final)
    ev = Evidence(EvidenceKind.RESULTS_VERIFIED, case.label, ctx.now, detail=str(final))
    if apply_case_step(ctx, case, Apply("retrieved", None, ev, f"results in {final}")):
        ctx.report.retrieved += 1


def _stamp(staging: Path, case: CaseRecord) -> None:
    data = {"case_id": case.id, "attempt": case.attempt, "label": case.label, "path": case.path}
    tmp = staging / (STAMP + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tmp.replace(staging / STAMP)


def _download(ctx: TickContext, case: CaseRecord, staging: Path) -> bool:
    host = ctx.host_of_case(case)
    if host is None or case.remote_dir is None:
        _give_up(ctx, case, f"unknown host {case.host!r} or remote directory", permanent=True)
        return False
    if ctx.health.is_down(host.name, ctx.now):
        return False
    staging.parent.mkdir(parents=True, exist_ok=True)
    remote = case.remote_dir
    if ctx.settings.results_subdir not in ("", "."):
        remote = f"{remote}/{ctx.settings.results_subdir}"
    label = case.label or ""

    def progress(done: int, total: int) -> None:
        if ctx.progress is not None:
            ctx.progress(label, done, total)

    try:
        report = host.transport.download_tree(
            remote, staging, progress=progress, timeout=ctx.settings.transfer_timeout_s
        )
    except HostUnreachableError as err:
        ctx.host_down(host.name, err)
        _give_up(ctx, case, str(err), permanent=False)
        return False
    except MqiError as err:
        _give_up(
            ctx, case, f"{type(err).__name__}: {err}", permanent=isinstance(err, PermanentError)
        )
        return False
    if report.files == 0:
        _give_up(ctx, case, "the job produced no result files", permanent=True)
        return False
    log.info("case %s: %d result files (%d bytes) verified", case.id, report.files, report.bytes)
    return True


def _give_up(ctx: TickContext, case: CaseRecord, error: str, *, permanent: bool) -> None:
    ctx.report.errors.append(f"case {case.id}: retrieval: {error}")
    decision = decide_retrieval_error(
        case_view(case), error, permanent=permanent, policy=ctx.policy
    )
    if isinstance(decision, Apply):
        apply_case_step(ctx, case, decision)
    else:
        note_case(
            ctx,
            case,
            f"retrieval failed: {error}",
            transient_failures=case.transient_failures + 1,
        )
