"""Where the jobs adopted from the original system run, and which GPUs they still hold.

The original system named its GPUs by their Pueue group and kept no host. Adoption
therefore stores none; the engine resolves it when it starts with a config: the host of
the configured GPU whose ``pueue_group`` is the legacy GPU's name (config validation
allows ``pueue_group`` only on Pueue hosts, so a legacy job is only ever observed
through Pueue). No match, or several hosts with that group, leaves the host unset: the
case (or zombie) waits, the reason naming the group is written to its audit trail once,
and ``check-config`` / ``doctor`` report it (:func:`legacy_problems`).

A legacy GPU row (say ``gpu0``) may be configured under another name (``server/gpu0``
with ``pueue_group: gpu0``): the same physical slot. While the legacy row still holds a
job (assigned or zombie), that configured twin is not offered to claims
(:func:`claimable_gpus`), so no new case lands on the slot of a job that may still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from ..errors import ConflictError
from ..persistence import CaseRecord, GpuRecord, Store
from ..statemachine import CaseState, GpuState
from .runtime import GpuRuntime

__all__ = ["LegacyHosts", "claimable_gpus", "legacy_problems", "plan_hosts", "resolve_hosts"]

log = logging.getLogger("mqi_communicator.engine")

_LIVE = (CaseState.SUBMITTING, CaseState.RUNNING, CaseState.RETRIEVING)
_HELD = (GpuState.ASSIGNED, GpuState.ZOMBIE)
_RESOLVED = "legacy job: host from its Pueue group"


@dataclass
class LegacyHosts:
    """Resolved hosts (case id / GPU name -> host) and the problems, keyed the same way."""

    cases: dict[int, str] = field(default_factory=dict)
    gpus: dict[str, str] = field(default_factory=dict)
    case_problems: dict[int, str] = field(default_factory=dict)
    gpu_problems: dict[str, str] = field(default_factory=dict)


def _host_for(group: str, configured: Sequence[GpuRuntime]) -> tuple[str | None, str]:
    hosts = sorted({g.host for g in configured if g.binding.pueue_group == group})
    if len(hosts) == 1:
        return hosts[0], ""
    if not hosts:
        return None, (
            f"legacy Pueue group {group!r}: no configured GPU has pueue_group {group!r}; "
            "add one on the host where that group lives (check-config lists these)"
        )
    return None, (
        f"legacy Pueue group {group!r} is configured on several hosts ({', '.join(hosts)}): "
        "cannot tell which one runs the legacy job"
    )


def plan_hosts(
    cases: Sequence[CaseRecord], gpus: Sequence[GpuRecord], configured: Sequence[GpuRuntime]
) -> LegacyHosts:
    """Decide the host of every legacy job that has none yet (pure)."""
    out = LegacyHosts()
    for c in cases:
        if c.job_origin != "legacy" or c.host or c.status not in _LIVE:
            continue
        host, why = _host_for(c.gpu_name or "", configured)
        if host is not None:
            out.cases[c.id] = host
        else:
            out.case_problems[c.id] = f"case {c.id} waits: {why}"
    for g in gpus:
        if g.job_origin != "legacy" or g.host or g.status not in _HELD:
            continue
        host, why = _host_for(g.name, configured)
        if host is not None:
            out.gpus[g.name] = host
        else:
            out.gpu_problems[g.name] = f"GPU {g.name} ({g.status.value}) waits: {why}"
    return out


def legacy_problems(store: Store, configured: Sequence[GpuRuntime]) -> list[str]:
    """Every legacy job whose host the config cannot tell, as one line each."""
    plan = plan_hosts(store.list_cases(_LIVE), store.list_gpus(), configured)
    return [*plan.case_problems.values(), *plan.gpu_problems.values()]


def _noted(store: Store, why: str, case_id: int | None = None, gpu: str | None = None) -> bool:
    last = store.history(case_id=case_id, gpu_name=gpu, limit=1)
    # The store appends the (here empty) field list to a note's detail.
    return bool(last) and last[-1].trigger == "note" and last[-1].detail.startswith(why)


def resolve_hosts(store: Store, configured: Sequence[GpuRuntime], now: datetime) -> LegacyHosts:
    """Write the resolved hosts (audited notes); note each problem once, log it each time.

    A write that loses a race (another engine starting at the same moment) is skipped:
    the next start resolves it again, and until then the job simply waits.
    """
    plan = plan_hosts(store.list_cases(_LIVE), store.list_gpus(), configured)
    writes: list[Callable[[], object]] = []
    for cid, host in plan.cases.items():
        writes.append(partial(store.update_case, cid, now, detail=_RESOLVED, host=host))
    for name, host in plan.gpus.items():
        writes.append(partial(store.update_gpu, name, now, detail=_RESOLVED, host=host))
    for cid, why in plan.case_problems.items():
        log.warning("%s", why)
        if not _noted(store, why, case_id=cid):
            writes.append(partial(store.update_case, cid, now, detail=why))
    for name, why in plan.gpu_problems.items():
        log.warning("%s", why)
        if not _noted(store, why, gpu=name):
            writes.append(partial(store.update_gpu, name, now, detail=why))
    for write in writes:
        try:
            write()
        except ConflictError as err:
            log.info("legacy job: write skipped (%s); the next start retries", err)
    return plan


def claimable_gpus(
    configured: Mapping[str, GpuRuntime], rows: Sequence[GpuRecord]
) -> dict[str, GpuRuntime]:
    """``configured`` without the twins of legacy GPU rows that still hold a job (pure)."""
    held = [g for g in rows if g.job_origin == "legacy" and g.status in _HELD]
    if not held:
        return dict(configured)

    def twin(rt: GpuRuntime) -> bool:
        return any(
            rt.name != g.name
            and rt.binding.pueue_group == g.name
            and (g.host is None or g.host == rt.host)
            for g in held
        )

    return {name: rt for name, rt in configured.items() if not twin(rt)}
