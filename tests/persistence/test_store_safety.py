"""The store's safety promises: refused steps write nothing, one step is one transaction,
and operators can take GPUs out of the pool without freeing a busy one."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mqi_communicator.errors import ConflictError, GuardRejectedError
from mqi_communicator.persistence import Store, make_engine
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind, GpuState
from tests.persistence.conftest import T0, at, label_plan


def _running_case(store: Store) -> tuple[int, str]:
    store.sync_gpus([("h/g0", "h"), ("h/g1", "h")], T0)
    rec, _ = store.register_case("/c1", T0)
    out = store.claim(rec.id, at(1), label_plan)
    assert out is not None
    store.apply(rec.id, "confirm_submitted", None, None, evidence=None, now=at(2), job_id="7")
    return rec.id, out[0].label or ""


def _snapshot(store: Store) -> tuple[object, ...]:
    return (store.list_cases(), store.list_gpus(), store.history())


@pytest.mark.parametrize(
    "evidence",
    [
        None,
        Evidence(EvidenceKind.KILL_REQUESTED, "mqi-1-a1", at(5), detail="kill returned 0"),
        Evidence(EvidenceKind.OBSERVED_TERMINAL, "mqi-99-a1", at(5), detail="a stranger"),
        Evidence(EvidenceKind.KILL_CONFIRMED, "mqi-1-a1", at(5), requested_at=at(6)),
    ],
    ids=["none", "kill-returned-0", "wrong-label", "kill-before-request"],
)
def test_release_without_termination_evidence_writes_nothing(
    store: Store, evidence: Evidence | None
) -> None:
    case_id, label = _running_case(store)
    assert label == "mqi-1-a1"
    before = _snapshot(store)
    for case_trigger in ("fail", "cancel", "requeue"):
        with pytest.raises(GuardRejectedError):
            store.apply(case_id, case_trigger, None, "release", evidence=evidence, now=at(9))
    assert _snapshot(store) == before
    gpu = store.get_gpu("h/g0")
    assert gpu.status is GpuState.ASSIGNED and gpu.case_id == case_id


def test_a_failure_between_case_and_gpu_write_moves_neither(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.sync_gpus([("h/a-bad", "h"), ("h/b-free", "h")], T0)
        rec, _ = store.register_case("/victim", T0)
        store.set_gpu_offline("h/a-bad", at(1), True)
        # Plant a row the unique constraint will collide with: the GPU UPDATE of the
        # claim fails after the case UPDATE of the same transaction has run.
        engine = make_engine(store_url)
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE gpu_resources SET assigned_case_id = :c WHERE name = 'h/a-bad'"),
                {"c": rec.id},
            )
        engine.dispose()
        before = _snapshot(store)
        with pytest.raises(ConflictError, match="constraint"):
            store.claim(rec.id, at(2), label_plan)
        assert _snapshot(store) == before
        case = store.get_case(rec.id)
        assert case.status is CaseState.SUBMITTED and case.version == 1 and case.label is None
        free = store.get_gpu("h/b-free")
        assert free.status is GpuState.AVAILABLE and free.case_id is None and free.version == 1
    finally:
        store.close()


def test_offline_available_gpu_moves_now_and_back(store: Store) -> None:
    store.sync_gpus([("h/g0", "h")], T0)
    g = store.set_gpu_offline("h/g0", at(1), True)
    assert g.status is GpuState.OFFLINE and g.offline_requested
    rec, _ = store.register_case("/c1", T0)
    assert store.claim(rec.id, at(2), label_plan) is None
    g = store.set_gpu_offline("h/g0", at(3), False)
    assert g.status is GpuState.AVAILABLE and not g.offline_requested
    assert store.claim(rec.id, at(4), label_plan) is not None
    triggers = [r.trigger for r in store.history(gpu_name="h/g0") if r.entity == "gpu"]
    assert triggers == ["add", "take_offline", "bring_online", "assign"]


def test_offline_assigned_gpu_drains_then_goes_offline(store: Store) -> None:
    case_id, label = _running_case(store)
    g = store.set_gpu_offline("h/g0", at(3), True)
    assert g.status is GpuState.ASSIGNED and g.offline_requested and g.case_id == case_id
    other, _ = store.register_case("/c2", T0)
    out = store.claim(other.id, at(4), label_plan)
    assert out is not None and out[1].name == "h/g1"  # never the draining GPU
    ev = Evidence(EvidenceKind.OBSERVED_TERMINAL, label, at(5))
    _, g = store.apply(case_id, "fail", None, "release", evidence=ev, now=at(5))
    assert g is not None and g.status is GpuState.OFFLINE and g.case_id is None


def test_offline_zombie_stays_zombie_until_evidence(store: Store) -> None:
    case_id, label = _running_case(store)
    store.apply(case_id, "fail", None, "quarantine", evidence=None, now=at(3))
    g = store.set_gpu_offline("h/g0", at(4), True)
    assert g.status is GpuState.ZOMBIE and g.offline_requested and g.job_label == label
    with pytest.raises(GuardRejectedError):
        store.apply(None, None, "h/g0", "recover", evidence=None, now=at(5))
    ev = Evidence(EvidenceKind.CONFIRMED_ABSENT, label, at(6))
    _, g2 = store.apply(None, None, "h/g0", "recover", evidence=ev, now=at(6))
    assert g2 is not None and g2.status is GpuState.OFFLINE and g2.job_label is None
    g3 = store.set_gpu_offline("h/g0", at(7), False)
    assert g3.status is GpuState.AVAILABLE
