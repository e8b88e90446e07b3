"""Claim a GPU, upload the case, submit the job; and recover submits cut short by a crash.

Each step is safe to repeat: the label and remote directory are stored (by the claim)
before anything is sent, so after a crash the job is looked up by its label.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from ..errors import (
    CaseContentError,
    HostUnreachableError,
    MqiError,
    SchedulerUnavailableError,
    SubmissionRejectedError,
)
from ..persistence import CaseRecord, GpuRecord
from ..remote.job.markers import revoke_snippet
from ..remote.protocol import JobSpec, Transport, remote_case_dir
from ..statemachine.decide import (
    Apply,
    decide_after_submit_error,
    decide_submitting_recovery,
)
from ..statemachine.evidence import Evidence, EvidenceKind
from ..statemachine.states import CaseState
from ..statemachine.triggers import CaseTrigger
from .act import apply_case_record, apply_case_step, drop_stale, note_case
from .fault import guard_case
from .lease import LeaseKeeper, keep_lease, take_over
from .retrieve_step import upload_exclusions, uploaded_note
from .runtime import HostRuntime, TickContext, case_view
from .transfers import TransferPool, check_stop, gpu_key, run_beside

__all__ = ["recover_submitting", "start_waiting_cases"]

log = logging.getLogger("mqi_communicator.engine")

#: One short remote command (mkdir + ln); generous for a slow login.
_REVOKE_TIMEOUT_S = 60.0


def start_waiting_cases(ctx: TickContext, waiting: list[CaseRecord]) -> None:
    """Claim GPUs for waiting cases, oldest first, and start their jobs.

    Upload and submit run in the transfer pool (:mod:`.transfers`); a GPU is claimed
    only on a host the pool has room for, so no claimed case waits for a slot.
    """
    pool = ctx.transfers or TransferPool()
    for case in waiting:
        if case.cancel_requested:
            apply_case_step(
                ctx,
                case,
                Apply(
                    CaseTrigger.CANCEL,
                    None,
                    None,
                    "cancelled before start",
                    "cancelled by operator",
                ),
            )
            continue
        if case.next_attempt_at is not None and ctx.now < case.next_attempt_at:
            continue
        candidates = [
            g.name
            for g in ctx.gpus.values()
            if not ctx.health.is_down(g.host, ctx.now) and pool.has_room(g.host)
        ]
        if not candidates:
            return
        lease = None if ctx.settings.exclusive else (ctx.engine_id, ctx.settings.lease_ttl_s)
        claimed = ctx.store.claim(
            case.id,
            ctx.now,
            plan=lambda c, g: _plan(ctx, c, g),
            candidates=candidates,
            lease=lease,
        )
        if claimed is None:
            if ctx.store.get_case(case.id).status is CaseState.SUBMITTED:
                return  # no GPU free: later cases cannot start either
            continue
        ctx.report.claimed += 1
        started, gpu = claimed
        if not pool.start(ctx, case.id, ctx.gpus[gpu.name].host, partial(_start, started, gpu)):
            # Stopping since the claim: left as a crash there would leave it.
            log.info("case %s: claimed, not started (stopping); recovered at next start", case.id)
            return


def _start(case: CaseRecord, gpu: GpuRecord, ctx: TickContext) -> None:
    with keep_lease(ctx, case.id) as keeper:
        # A local error stays with this case (engine/fault.py); others still start.
        guard_case(ctx, case, "starting", partial(_upload_and_submit, ctx, gpu=gpu, keeper=keeper))


def _plan(ctx: TickContext, case: CaseRecord, gpu: GpuRecord) -> tuple[str, str]:
    host = ctx.hosts[ctx.gpus[gpu.name].host]
    label = f"{ctx.settings.label_prefix}-{case.id}-a{case.attempt}"
    return label, remote_case_dir(host.remote_base, case.id, case.attempt)


def _upload_and_submit(
    ctx: TickContext, case: CaseRecord, gpu: GpuRecord, keeper: LeaseKeeper
) -> None:
    """Upload and submit attempt ``case.attempt``; every outcome applies to it alone."""
    gpu_rt = ctx.gpus[gpu.name]
    host = ctx.hosts[gpu_rt.host]
    assert case.label is not None and case.remote_dir is not None
    label = case.label

    def progress(done: int, total: int) -> None:
        if ctx.progress is not None:
            ctx.progress(label, done, total)

    try:
        report = host.transport.upload_tree(
            Path(case.path),
            case.remote_dir,
            progress=progress,
            timeout=ctx.settings.transfer_timeout_s,
            exclude=upload_exclusions(ctx.settings.results_subdir),
            abort=ctx.abort,
        )
    except MqiError as err:
        _submit_failed(ctx, case, host.name, err, sent=False)
        return
    finally:
        # The link is free for the next case's upload while this one submits.
        if ctx.transfers is not None:
            ctx.transfers.bytes_done(case.id)
    # Nothing may be submitted for an attempt another engine has taken over.
    if not keeper.still_ours():
        drop_stale(ctx, case, "another engine took its lease over; not submitted")
        return
    if not note_case(ctx, case, uploaded_note(case, report), progress=30):
        return
    spec = JobSpec(
        label=label,
        remote_dir=case.remote_dir,
        command=tuple(ctx.settings.command),
        gpu=gpu_rt.binding,
        env=dict(ctx.settings.env),
        time_limit_s=int(ctx.policy.job_timeout.total_seconds()) + 600,
        token=case.attempt_token,
    )
    # Stopping (SIGTERM): nothing is submitted after the signal. The case stays
    # `submitting`, as a crash here leaves it; the next start recovers it by label.
    check_stop(ctx, f"case {case.id}: submit")
    try:
        ref = host.scheduler.submit(spec)
    except (SubmissionRejectedError, SchedulerUnavailableError) as err:
        _submit_failed(ctx, case, host.name, err, sent=False)
        return
    except MqiError as err:
        # Unreachable mid-submit, or an answer we could not read: the job may exist.
        _submit_failed(ctx, case, host.name, err, sent=True)
        return
    ctx.report.submitted += 1
    ev = Evidence(EvidenceKind.SUBMIT_ACCEPTED, label, ctx.now, job_id=ref.job_id)
    fresh = ctx.store.get_case(case.id)
    apply_case_step(
        ctx,
        fresh,
        Apply(CaseTrigger.CONFIRM_SUBMITTED, None, ev, f"submitted as {ref.job_id}"),
        job_id=ref.job_id,
        started=case,
    )


def _submit_failed(
    ctx: TickContext, case: CaseRecord, host: str, err: Exception, sent: bool
) -> None:
    if isinstance(err, HostUnreachableError):
        ctx.host_down(host, err)
    # Only content and rejection errors repeat for sure; anything else gets new attempts.
    permanent = isinstance(err, CaseContentError | SubmissionRejectedError)
    text = f"{type(err).__name__}: {err}"
    ctx.report.errors.append(f"case {case.id}: {text}")
    log.warning("case %s: start failed (%s)", case.id, text)
    # The row is reloaded for its version (our own notes moved it); the decision still
    # applies only to the attempt the upload or submit was started for (``started``).
    fresh = ctx.store.get_case(case.id)
    decision = decide_after_submit_error(
        case_view(fresh), text, permanent=permanent, sent=sent, now=ctx.now, policy=ctx.policy
    )
    if not isinstance(decision, Apply):
        return
    # A requeue waits out a backoff before the next attempt: one step sets both.
    retry_at = None
    if decision.case_trigger is CaseTrigger.REQUEUE:
        retry_at = ctx.now + ctx.health.backoff.delay(fresh.attempt)
    apply_case_record(ctx, fresh, decision, started=case, retry_at=retry_at)


def recover_submitting(ctx: TickContext, case: CaseRecord) -> None:
    """A ``submitting`` case nobody is working on: find its job by label, or release.

    The lookup (and the revoke) run beside the tick (:func:`~.transfers.run_beside`),
    holding the case and its GPU: a host that hangs stalls no other case.
    """
    if ctx.transfers is not None and ctx.transfers.busy(case.id):
        return  # our own upload, submit or lookup runs, or just ended: this row is stale
    host = ctx.host_of_case(case)
    if host is None or case.label is None or case.remote_dir is None:
        log.error("case %s is submitting on an unknown host %r; waiting", case.id, case.host)
        return
    if ctx.health.is_down(host.name, ctx.now):
        return
    keys = (case.id, gpu_key(case.gpu_name)) if case.gpu_name else case.id
    run_beside(ctx, keys, host.name, partial(_recover_guarded, case, host))


def _recover_guarded(case: CaseRecord, host: HostRuntime, ctx: TickContext) -> None:
    guard_case(ctx, case, "recovering", partial(_take_and_recover, ctx, host))


def _take_and_recover(ctx: TickContext, host: HostRuntime, case: CaseRecord) -> None:
    # Another engine's live lease means its upload or submit still runs: hands off.
    leased = take_over(ctx, case, grace_without_lease=True)
    if leased is None:
        return
    with keep_lease(ctx, case.id):
        _recover(ctx, leased, host)


def _recover(ctx: TickContext, case: CaseRecord, host: HostRuntime) -> None:
    assert case.label is not None and case.remote_dir is not None
    reachable = True
    found = None
    try:
        found = host.scheduler.find_by_label(case.label, case.remote_dir)
    except (HostUnreachableError, SchedulerUnavailableError) as err:
        reachable = False
        ctx.host_down(host.name, err)
    except MqiError as err:
        log.warning("case %s: cannot look up job by label: %s", case.id, err)
        return
    decision = decide_submitting_recovery(
        case_view(case), found.job_id if found else None, reachable, ctx.now, ctx.policy
    )
    # "Not found" is only final once no late submit can start the job any more.
    if (
        isinstance(decision, Apply)
        and found is None
        and reachable
        and not _revoke_start(ctx, case, host.name, host.transport)
    ):
        return
    if isinstance(decision, Apply):
        apply_case_step(ctx, case, decision, job_id=found.job_id if found else None)


def _revoke_start(ctx: TickContext, case: CaseRecord, host: str, transport: Transport) -> bool:
    """Take the start claim of ``case``'s directory; True when no wrapper can start there.

    A submit cut off by the network may still reach the scheduler after the lookup said
    "no such job"; once revoked, its wrapper exits without running anything.
    """
    assert case.remote_dir is not None
    try:
        # An attempt claimed before tokens existed runs the old wrapper: claim its place.
        script = revoke_snippet(case.remote_dir, legacy=case.attempt_token is None)
        result = transport.run(script, timeout=_REVOKE_TIMEOUT_S)
    except HostUnreachableError as err:
        ctx.host_down(host, err)
        return False
    except MqiError as err:
        log.warning("case %s: cannot revoke the start of its job: %s", case.id, err)
        return False
    if result.exit_code != 0:
        log.warning(
            "case %s: job not found by label, but its start claim is taken (exit %s: %s); "
            "waiting for the job to show up",
            case.id,
            result.exit_code,
            result.stderr.strip()[-200:],
        )
        return False
    return True
