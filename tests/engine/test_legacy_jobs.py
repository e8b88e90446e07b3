"""Where a legacy job runs, and which configured slots it keeps from new cases (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from mqi_communicator.engine.legacy_jobs import claimable_gpus, plan_hosts
from mqi_communicator.engine.runtime import GpuRuntime
from mqi_communicator.persistence import GpuRecord
from mqi_communicator.remote.protocol import GpuBinding
from mqi_communicator.statemachine import GpuState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def row(
    name: str, status: GpuState, host: str | None = None, origin: str | None = "legacy"
) -> GpuRecord:
    return GpuRecord(
        name=name,
        host=host,
        status=status,
        case_id=None,
        job_label="mqic_case_5",
        job_id="3",
        job_dir=None,
        offline_requested=False,
        kill_requested_at=None,
        next_check_at=None,
        status_updated_at=NOW,
        version=1,
        job_origin=origin,
    )


def rt(name: str, host: str, group: str) -> GpuRuntime:
    return GpuRuntime(name, host, GpuBinding(name, pueue_group=group))


def test_a_group_on_several_hosts_is_ambiguous_and_waits() -> None:
    configured = [rt("a/gpu0", "a", "gpu0"), rt("b/gpu0", "b", "gpu0"), rt("a/gpu1", "a", "gpu1")]
    plan = plan_hosts([], [row("gpu0", GpuState.ZOMBIE), row("gpu1", GpuState.ZOMBIE)], configured)
    assert plan.gpus == {"gpu1": "a"}
    assert "several hosts (a, b)" in plan.gpu_problems["gpu0"]
    # Not legacy, already resolved, or holding nothing: nothing to resolve.
    others = [
        row("gpu0", GpuState.ZOMBIE, origin=None),
        row("gpu1", GpuState.ZOMBIE, host="a"),
        row("gpu1", GpuState.AVAILABLE),
    ]
    assert plan_hosts([], others, configured).gpus == {}


def test_only_the_twin_on_the_legacy_host_is_held_back_and_only_while_held() -> None:
    configured = {g.name: g for g in (rt("a/gpu0", "a", "gpu0"), rt("b/gpu0", "b", "gpu0"))}
    held = claimable_gpus(configured, [row("gpu0", GpuState.ASSIGNED, host="a")])
    assert sorted(held) == ["b/gpu0"]
    unresolved = claimable_gpus(configured, [row("gpu0", GpuState.ZOMBIE)])
    assert unresolved == {}  # host unknown: every slot of that group waits
    free = claimable_gpus(configured, [row("gpu0", GpuState.AVAILABLE, host="a")])
    assert sorted(free) == ["a/gpu0", "b/gpu0"]
