"""Bring a succeeded job's results home: download, verify, move into place atomically.

Only what the job wrote counts. The results are ``<remote_dir>/<results_subdir>``
(``engine.results_subdir``, default ``output``), and the upload never sends the case's
own entry of that name, in any letter case and whatever it is (folder, file, symlink):
:func:`upload_exclusions` is passed to ``Transport.upload_tree``, the tar producer
leaves it out, the far side verifies the exact set of uploaded paths, and the exclusion
is logged and noted in the case's audit trail (the local folder is never changed). So
the results folder does not exist on the far side until the job creates it, and every
file in it was written by the job. A job that wrote none (no folder, or an empty one)
fails with "the job produced no result files", whatever stale results the case
shipped. The whole case directory can never be the results (``check_results_subdir``
refuses ``""`` and ``"."``): telling the job's files from uploaded ones there would need
a content comparison that a job rewriting an input cannot pass honestly. Limit: a job
that itself copies uploaded files into its results folder is indistinguishable from
one that computed them.

Results of case ``NAME`` land in ``<results_dir>/NAME``, or ``NAME.case<id>`` when that
is taken (:mod:`.results_place`: an existing folder is never replaced). The download goes
to ``<results_dir>/.mqi-staging/case<id>_a<attempt>`` (itself verified and atomic), gets
a ``.mqi-result.json`` stamp, and is then renamed into place. Every step checks what is
already done, so a crash at any point is finished by the next tick and never leaves a
half-written folder under ``<results_dir>/NAME``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..config.engine import check_results_subdir
from ..errors import HostUnreachableError, MqiError, PermanentError, RemoteSourceMissingError
from ..persistence import CaseRecord
from ..remote.protocol import TransferReport
from ..statemachine.decide import Apply, decide_retrieval_error
from ..statemachine.evidence import Evidence, EvidenceKind
from ..statemachine.triggers import CaseTrigger
from .act import apply_case_step, note_case
from .fault import storage_errno
from .lease import keep_lease, take_over
from .results_place import STAMP, choose_results_folder
from .runtime import TickContext, case_view
from .storage_wait import storage_problem, wait_for_storage

__all__ = ["NO_RESULTS", "results_path", "retrieve", "upload_exclusions", "uploaded_note"]

log = logging.getLogger("mqi_communicator.engine")
#: The failure reason of a job that wrote no result files.
NO_RESULTS = "the job produced no result files"


def upload_exclusions(results_subdir: str) -> tuple[str, ...]:
    """What an upload must leave out so that every result file is one the job wrote."""
    return (check_results_subdir(results_subdir),)


def uploaded_note(case: CaseRecord, report: TransferReport) -> str:
    """The audit note of a finished upload; logs what it left out of the case."""
    if not report.excluded:
        return "uploaded"
    left_out = ", ".join(repr(p) for p in report.excluded)
    log.warning(
        "case %s: left %s out of the upload: results come only from the job", case.id, left_out
    )
    return f"uploaded; left out {left_out} (results come only from the job)"


def results_path(results_dir: Path, case: CaseRecord) -> Path:
    """Where this attempt's results end up (never an existing folder of another)."""
    return choose_results_folder(results_dir, case.name, case.id, case.attempt)


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
    needed = _Needed()
    with keep_lease(ctx, case.id):
        try:
            _retrieve(ctx, leased, needed)
        except OSError as err:
            code = storage_errno(err)
            if code is None:
                raise  # counted by the case's fault boundary (engine/fault.py)
            wait_for_storage(ctx, leased, err, code, needed.bytes)


@dataclass
class _Needed:
    """The size of the results, once the transfer has said it (for the wait reason)."""

    bytes: int = 0


def _retrieve(ctx: TickContext, case: CaseRecord, needed: _Needed) -> None:
    results_dir = ctx.settings.results_dir
    final = results_path(results_dir, case)
    staging = results_dir / ".mqi-staging" / f"case{case.id}_a{case.attempt}"
    if not _stamp_matches(final, case):
        if not staging.exists() and not _download(ctx, case, staging, needed):
            return
        _stamp(staging, case)
        final = results_path(results_dir, case)  # again: never onto what appeared meanwhile
        staging.rename(final)
    ev = Evidence(EvidenceKind.RESULTS_VERIFIED, case.label, ctx.now, detail=str(final))
    if apply_case_step(ctx, case, Apply(CaseTrigger.RETRIEVED, None, ev, f"results in {final}")):
        ctx.report.retrieved += 1


def _stamp(staging: Path, case: CaseRecord) -> None:
    data = {"case_id": case.id, "attempt": case.attempt, "label": case.label, "path": case.path}
    tmp = staging / (STAMP + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tmp.replace(staging / STAMP)


def _download(ctx: TickContext, case: CaseRecord, staging: Path, needed: _Needed) -> bool:
    host = ctx.host_of_case(case)
    if case.job_origin == "legacy":
        # The original system's job wrote its results where that system expected them.
        why = "a legacy job's results are not in a folder of ours; retry to run the case here"
        _give_up(ctx, case, why, permanent=True)
        return False
    if host is None or case.remote_dir is None:
        _give_up(ctx, case, f"unknown host {case.host!r} or remote directory", permanent=True)
        return False
    if ctx.health.is_down(host.name, ctx.now):
        return False
    staging.parent.mkdir(parents=True, exist_ok=True)
    remote = f"{case.remote_dir}/{check_results_subdir(ctx.settings.results_subdir)}"
    label = case.label or ""

    def progress(done: int, total: int) -> None:
        needed.bytes = total
        if ctx.progress is not None:
            ctx.progress(label, done, total)

    try:
        report = host.transport.download_tree(
            remote,
            staging,
            progress=progress,
            timeout=ctx.settings.transfer_timeout_s,
            abort=ctx.abort,
        )
    except HostUnreachableError as err:
        ctx.host_down(host.name, err)
        _give_up(ctx, case, str(err), permanent=False)
        return False
    except RemoteSourceMissingError as err:
        _give_up(ctx, case, f"{NO_RESULTS} ({err})", permanent=True)
        return False
    except MqiError as err:
        code = storage_problem(ctx, err, needed.bytes)
        if code is not None:  # our results disk, not the transfer
            wait_for_storage(ctx, case, err, code, needed.bytes)
            return False
        _give_up(
            ctx, case, f"{type(err).__name__}: {err}", permanent=isinstance(err, PermanentError)
        )
        return False
    if report.files == 0:
        _give_up(ctx, case, f"{NO_RESULTS} ({remote} is empty)", permanent=True)
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
        return
    # Resumable: the job's results stay on the far side; the download is tried again
    # after the engine's backoff, never by rerunning the job.
    failures = case.transient_failures + 1
    retry_at = ctx.now + ctx.health.backoff.delay(failures)
    log.warning(
        "case %s: retrieval failed (%d of %d); next attempt at %s: %s",
        case.id,
        failures,
        ctx.policy.max_retrieve_failures,
        f"{retry_at:%Y-%m-%d %H:%M:%S}",
        error,
    )
    note_case(
        ctx,
        case,
        f"retrieval failed: {error}",
        transient_failures=failures,
        next_attempt_at=retry_at,
        last_error=f"retrieving: {error}"[:500],
    )
