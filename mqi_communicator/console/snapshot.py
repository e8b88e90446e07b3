"""One consistent, bounded picture of the service for live views, read from the database.

Pure apart from :func:`take_snapshot`, which runs the bounded queries of
:mod:`mqi_communicator.persistence.overview` in one read transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy.orm import Session

from ..display import HeldBack, fmt_elapsed, held_back, one_line
from ..persistence import CaseRecord, GpuRecord, Store, TransitionRecord, store_reads
from ..persistence import overview as q
from ..persistence.host_health import HostHealthRecord, read_host_health
from ..statemachine import TERMINAL_CASE_STATES, CaseState, GpuState
from ..textsafe import printable

__all__ = [
    "CaseRow",
    "GpuRow",
    "HostRow",
    "Snapshot",
    "describe_health",
    "fault_text",
    "fmt_elapsed",
    "host_health",
    "take_snapshot",
]

#: What a transfer or job phase is called in the progress column.
_PHASE = {
    CaseState.SUBMITTING: "up",
    CaseState.RUNNING: "job",
    CaseState.RETRIEVING: "down",
}
#: A host no engine has recorded health for (it records at its first contact).
_NEVER = ("unknown", "not contacted by the engine yet")
#: GPUs needing attention first.
_GPU_ORDER = {GpuState.ZOMBIE: 0, GpuState.OFFLINE: 1, GpuState.ASSIGNED: 2, GpuState.AVAILABLE: 3}


@dataclass(frozen=True)
class CaseRow:
    """One case line. ``elapsed_s``: in its state (live) or start to end (ended)."""

    id: int
    name: str
    state: CaseState
    gpu: str | None
    host: str | None
    attempt: int
    elapsed_s: float | None
    progress: str
    reason: str


@dataclass(frozen=True)
class GpuRow:
    """One GPU line: the case it holds, or the case whose job a zombie quarantines."""

    name: str
    host: str | None
    state: GpuState
    case_id: int | None
    case_name: str | None
    quarantined: bool
    since: datetime
    offline_requested: bool
    next_check_at: datetime | None


@dataclass(frozen=True)
class HostRow:
    """One host line. ``health`` is ``up``/``down`` when persisted, else ``unknown``."""

    name: str
    gpus: int
    busy: int
    zombies: int
    offline: int
    live_cases: int
    health: str
    detail: str


@dataclass(frozen=True)
class Snapshot:
    """What a live view shows at ``taken_at``."""

    taken_at: datetime
    counts: Mapping[CaseState, int]
    cases: Sequence[CaseRow]
    #: Live cases not in ``cases`` (beyond the limit).
    live_hidden: int
    gpus: Sequence[GpuRow]
    hosts: Sequence[HostRow]
    #: The loaded live cases the engine holds back (backing off, failing, waiting).
    held: Sequence[HeldBack] = ()


def describe_health(rec: HostHealthRecord | None, now: datetime) -> tuple[str, str]:
    """``(up|down|unknown, one-line detail)`` of a host's persisted health at ``now``.

    The one wording every view uses (``top``, ``status``, ``gpus list``, ``run``).
    """
    if rec is None:
        return _NEVER
    for_ = fmt_elapsed((now - rec.since).total_seconds())
    failing = fault_text(rec.poll_failures, rec.poll_error, rec.poll_next_at)
    poll = f"; poll {failing}" if failing else ""
    if rec.up:
        return "up", f"up for {for_}{poll}"
    retry = "-"
    if rec.next_retry_at is not None:
        left = (rec.next_retry_at - now).total_seconds()
        retry = f"in {fmt_elapsed(left)}" if left > 0 else "due"
    # One line, no terminal control: the error text comes from the far side.
    error = one_line(rec.last_error)
    tries = f"{rec.failures} failed tr{'y' if rec.failures == 1 else 'ies'}"
    return "down", f"down for {for_}, {tries}, next try {retry}: {error}{poll}"


def fault_text(failures: int, error: str | None, next_at: datetime | None) -> str | None:
    """``failing (N in a row): <error>; next attempt at <UTC>``, or None without failures.

    The one wording of a GPU's check or a host's poll backing off after local errors
    (``engine/fault.py``), in every view: prefix it with what fails.
    """
    if failures <= 0:
        return None
    when = f"{next_at:%Y-%m-%d %H:%M:%S} UTC" if next_at is not None else "-"
    text = printable(" ".join((error or "").split()))
    return f"failing ({failures} in a row): {text}; next attempt at {when}"


def host_health(s: Session, now: datetime) -> dict[str, tuple[str, str]]:
    """Persisted host health, ``name -> (up|down, detail)`` (see :func:`describe_health`).

    The one place live views read it; hosts the engine never contacted are absent.
    """
    return {h: describe_health(rec, now) for h, rec in read_host_health(s).items()}


def _case_row(c: CaseRecord, last: TransitionRecord | None, now: datetime) -> CaseRow:
    ended = c.status in TERMINAL_CASE_STATES
    if ended:
        end = c.completed_at or c.status_updated_at
        elapsed: float | None = (end - c.created_at).total_seconds()
    else:
        elapsed = (now - c.status_updated_at).total_seconds()
    phase = _PHASE.get(c.status)
    progress = f"{phase} {c.progress}%" if phase else ("100%" if c.progress >= 100 else "")
    reason = c.failure_reason or (last.detail if last is not None else "") or ""
    if c.cancel_requested and not ended:
        reason = f"cancel requested; {reason}" if reason else "cancel requested"
    return CaseRow(
        id=c.id,
        name=printable(c.name),
        state=c.status,
        gpu=c.gpu_name,
        host=c.host,
        attempt=c.attempt,
        elapsed_s=elapsed,
        progress=progress,
        reason=one_line(reason),  # one line, whatever the reason held
    )


def _gpu_row(g: GpuRecord, names: Mapping[int, str]) -> GpuRow:
    case_id = g.case_id if g.case_id is not None else g.quarantined_case_id
    name = names.get(case_id) if case_id is not None else None
    return GpuRow(
        name=g.name,
        host=g.host,
        state=g.status,
        case_id=case_id,
        case_name=None if name is None else printable(name),
        quarantined=g.status is GpuState.ZOMBIE and g.quarantined_case_id is not None,
        since=g.status_updated_at,
        offline_requested=g.offline_requested,
        next_check_at=g.next_check_at,
    )


def _hosts(
    names: Sequence[str],
    gpus: Sequence[GpuRow],
    cases: Sequence[CaseRow],
    health: Mapping[str, tuple[str, str]],
) -> list[HostRow]:
    known = list(dict.fromkeys([*names, *(g.host for g in gpus if g.host)]))
    live = Counter(c.host for c in cases if c.state not in TERMINAL_CASE_STATES and c.host)
    out = []
    for h in known:
        mine = [g for g in gpus if g.host == h]
        state, detail = health.get(h, _NEVER)
        out.append(
            HostRow(
                name=h,
                gpus=len(mine),
                busy=sum(g.state is GpuState.ASSIGNED for g in mine),
                zombies=sum(g.state is GpuState.ZOMBIE for g in mine),
                offline=sum(g.state is GpuState.OFFLINE for g in mine),
                live_cases=live[h],
                health=state,
                detail=detail,
            )
        )
    return out


def _read(
    s: Session, host_names: Sequence[str], now: datetime, live_limit: int, ended_limit: int
) -> Snapshot:
    counts = store_reads.count_by_status(s)
    live = q.live_cases(s, live_limit)
    ended = q.recent_ended_cases(s, ended_limit)
    gpus = store_reads.list_gpus(s)
    last = q.latest_transitions(s, [c.id for c in (*live, *ended)])
    holding = [i for g in gpus for i in (g.case_id, g.quarantined_case_id) if i is not None]
    names = q.case_names(s, holding)
    gpu_rows = sorted(
        (_gpu_row(g, names) for g in gpus), key=lambda g: (_GPU_ORDER[g.state], g.name)
    )
    case_rows = [_case_row(c, last.get(c.id), now) for c in (*live, *ended)]
    live_total = sum(n for st, n in counts.items() if st not in TERMINAL_CASE_STATES)
    return Snapshot(
        taken_at=now,
        counts=counts,
        cases=case_rows,
        live_hidden=max(0, live_total - len(live)),
        gpus=gpu_rows,
        hosts=_hosts(host_names, gpu_rows, case_rows, host_health(s, now)),
        held=[h for c in live if (h := held_back(c, now)) is not None],
    )


def take_snapshot(
    store: Store,
    host_names: Sequence[str],
    now: datetime,
    *,
    live_limit: int = 200,
    ended_limit: int = 20,
) -> Snapshot:
    """Read one consistent snapshot: counts, live + recent cases, GPUs, hosts.

    Args:
        store: An open store (reads only; no engine lock).
        host_names: The configured hosts (shown even without GPUs in the database).
        now: The time the elapsed columns are measured to (aware UTC).
        live_limit: At most this many live cases (oldest first).
        ended_limit: Plus this many most recent ended cases.
    """
    return store.read(
        partial(
            _read, host_names=host_names, now=now, live_limit=live_limit, ended_limit=ended_limit
        )
    )
