"""Store behaviour on SQLite and PostgreSQL: register, sync, claim, apply, notes, reads."""

from __future__ import annotations

import pytest

from mqi_communicator.errors import (
    ConflictError,
    GuardRejectedError,
    InvalidTransitionError,
    NotFoundError,
)
from mqi_communicator.persistence import Store
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind, GpuState
from tests.persistence.conftest import T0, at, label_plan


def _gpus(store: Store, *names: str) -> None:
    store.sync_gpus([(n, n.split("/")[0]) for n in names], T0)


def test_register_is_idempotent(store: Store) -> None:
    rec, created = store.register_case("/data/run 01/ケース", at(1))
    again, created_again = store.register_case("/data/run 01/ケース", at(2))
    assert created and not created_again
    assert again == rec
    assert rec.status is CaseState.SUBMITTED and rec.attempt == 1 and rec.progress == 0
    assert rec.name == "ケース" and rec.created_at == at(1) and rec.version == 1
    assert store.find_case("/data/run 01/ケース") == rec
    assert store.find_case("/nope") is None
    rows = store.history(case_id=rec.id)
    assert [(r.trigger, r.from_state, r.to_state) for r in rows] == [("register", "-", "submitted")]


def test_times_round_trip_as_aware_utc(store: Store) -> None:
    rec, _ = store.register_case("/c", at(0.123456))
    got = store.get_case(rec.id)
    assert got.created_at == at(0.123456) and got.created_at.utcoffset() is not None


def test_sync_gpus_adds_missing_and_never_resurrects(store: Store) -> None:
    _gpus(store, "h1/g0", "h1/g1")
    rec, _ = store.register_case("/c1", T0)
    store.claim(rec.id, at(1), label_plan)
    store.apply(rec.id, "fail", None, "quarantine", evidence=None, now=at(2))
    _gpus(store, "h1/g0", "h1/g1", "h2/g0")
    by_name = {g.name: g for g in store.list_gpus()}
    assert sorted(by_name) == ["h1/g0", "h1/g1", "h2/g0"]
    assert by_name["h1/g0"].status is GpuState.ZOMBIE  # untouched by sync
    assert by_name["h2/g0"].host == "h2" and by_name["h2/g0"].status is GpuState.AVAILABLE
    assert [r.trigger for r in store.history(gpu_name="h2/g0")] == ["add"]


def test_claim_locks_case_and_gpu_together(store: Store) -> None:
    _gpus(store, "h/g0", "h/g1")
    rec, _ = store.register_case("/c1", T0)
    out = store.claim(rec.id, at(1), label_plan)
    assert out is not None
    case, gpu = out
    assert case.status is CaseState.SUBMITTING and case.gpu_name == gpu.name == "h/g0"
    assert case.label == "mqi-1-a1" and case.remote_dir == "/remote/cases/1/1"
    assert case.host == "h" and case.version == 2
    assert gpu.status is GpuState.ASSIGNED and gpu.case_id == case.id
    assert gpu.job_label == case.label and gpu.job_dir == case.remote_dir
    assert store.get_case(rec.id) == case and store.get_gpu("h/g0") == gpu
    # A second claim of the same case does nothing: it is no longer submitted.
    assert store.claim(rec.id, at(2), label_plan) is None
    assert store.get_gpu("h/g1").status is GpuState.AVAILABLE
    trail = [(r.entity, r.trigger, r.to_state) for r in store.history()]
    assert trail[-2:] == [("case", "claim", "submitting"), ("gpu", "assign", "assigned")]


def test_claim_respects_candidates_and_free_pool(store: Store) -> None:
    _gpus(store, "h/g0", "h/g1")
    c1, _ = store.register_case("/c1", T0)
    c2, _ = store.register_case("/c2", T0)
    c3, _ = store.register_case("/c3", T0)
    assert store.claim(c1.id, at(1), label_plan, candidates=["nope"]) is None
    out = store.claim(c1.id, at(1), label_plan, candidates=["h/g1", "h/g0"])
    assert out is not None and out[1].name == "h/g1"
    out2 = store.claim(c2.id, at(2), label_plan)
    assert out2 is not None and out2[1].name == "h/g0"
    assert store.claim(c3.id, at(3), label_plan) is None  # no GPU free
    assert store.get_case(c3.id).status is CaseState.SUBMITTED


def test_full_life_with_effects(store: Store) -> None:
    _gpus(store, "h/g0")
    rec, _ = store.register_case("/c1", T0)
    case, gpu = store.claim(rec.id, at(1), label_plan) or (None, None)
    assert case is not None and gpu is not None
    case2, gpu2 = store.apply(
        rec.id, "confirm_submitted", None, None, evidence=None, now=at(2), job_id="17"
    )
    assert case2 is not None and case2.status is CaseState.RUNNING and case2.job_id == "17"
    assert gpu2 is not None and gpu2.job_id == "17"  # the GPU remembers the job too
    store.update_case(rec.id, at(3), detail="seen running", started_at=at(3), progress=40)
    ev = Evidence(EvidenceKind.OBSERVED_TERMINAL, case.label, at(4), job_id="17")
    with pytest.raises(InvalidTransitionError):  # leaving `running` must free the GPU
        store.apply(rec.id, "job_succeeded", None, None, evidence=ev, now=at(4))
    case3, gpu3 = store.apply(rec.id, "job_succeeded", None, "release", evidence=ev, now=at(4))
    assert case3 is not None and case3.status is CaseState.RETRIEVING
    assert case3.gpu_name is None and case3.label == case.label
    assert gpu3 is not None and gpu3.status is GpuState.AVAILABLE and gpu3.case_id is None
    case4, _ = store.apply(rec.id, "retrieved", None, None, evidence=None, now=at(5))
    assert case4 is not None and case4.status is CaseState.COMPLETED
    assert case4.progress == 100 and case4.completed_at == at(5) and case4.started_at == at(3)


def test_requeue_and_retry_reset_the_attempt(store: Store) -> None:
    _gpus(store, "h/g0")
    rec, _ = store.register_case("/c1", T0)
    case, _ = store.claim(rec.id, at(1), label_plan) or (None, None)
    assert case is not None
    ev = Evidence(EvidenceKind.NEVER_SUBMITTED, case.label, at(2))
    c, g = store.apply(
        rec.id, "requeue", None, "release", evidence=ev, now=at(2), failure_reason="upload failed"
    )
    assert c is not None and g is not None
    assert c.status is CaseState.SUBMITTED and c.attempt == 2 and c.label is None
    assert c.gpu_name is None and c.failure_reason == "upload failed"
    assert g.status is GpuState.AVAILABLE and g.case_id is None and g.job_label is None
    c, _ = store.apply(rec.id, "cancel", None, None, evidence=None, now=at(3))
    assert c is not None and c.status is CaseState.CANCELLED
    assert c.failure_reason == "cancelled by operator" and c.completed_at == at(3)
    c, _ = store.apply(rec.id, "retry", None, None, evidence=None, now=at(4))
    assert c is not None and c.status is CaseState.SUBMITTED and c.attempt == 3
    assert c.failure_reason is None and c.completed_at is None
    again = store.claim(rec.id, at(5), label_plan)
    assert again is not None and again[0].label == "mqi-1-a3"
    attempts = [
        (r.trigger, r.attempt, r.label) for r in store.history(case_id=rec.id) if r.entity == "case"
    ]
    assert attempts[-1] == ("claim", 3, "mqi-1-a3")


def test_gpu_name_defaults_to_the_cases_gpu(store: Store) -> None:
    _gpus(store, "h/g0")
    rec, _ = store.register_case("/c1", T0)
    case, _ = store.claim(rec.id, at(1), label_plan) or (None, None)
    assert case is not None
    c, g = store.apply(
        rec.id,
        "fail",
        None,
        "quarantine",
        evidence=None,
        now=at(2),
        failure_reason="timeout, kill unconfirmed",
    )
    assert c is not None and g is not None and g.name == "h/g0"
    assert g.status is GpuState.ZOMBIE and g.case_id is None
    assert g.job_label == case.label and g.job_dir == case.remote_dir  # kept
    wrong = Evidence(EvidenceKind.CONFIRMED_ABSENT, "someone-else", at(3))
    with pytest.raises(GuardRejectedError):
        store.apply(None, None, "h/g0", "recover", evidence=wrong, now=at(3))
    right = Evidence(EvidenceKind.CONFIRMED_ABSENT, case.label, at(4))
    _, g2 = store.apply(None, None, "h/g0", "recover", evidence=right, now=at(4))
    assert g2 is not None and g2.status is GpuState.AVAILABLE and g2.job_label is None


def test_invalid_trigger_and_missing_rows(store: Store) -> None:
    rec, _ = store.register_case("/c1", T0)
    with pytest.raises(InvalidTransitionError):
        store.apply(rec.id, "retrieved", None, None, evidence=None, now=at(1))
    with pytest.raises(NotFoundError):
        store.apply(999, "fail", None, None, evidence=None, now=at(1))
    with pytest.raises(NotFoundError):
        store.get_case(999)
    with pytest.raises(NotFoundError):
        store.get_gpu("nope")
    with pytest.raises(ValueError, match="status"):
        store.update_case(rec.id, at(1), detail="x", status="completed")
    assert store.get_case(rec.id).version == 1


def test_stale_expected_version_is_a_conflict_and_writes_nothing(
    store: Store, store_url: str
) -> None:
    rec, _ = store.register_case("/c1", T0)
    with Store.open(store_url) as other:  # another writer, its own connections
        other.update_case(rec.id, at(1), detail="someone else", progress=5)  # version 2
    before = store.history()
    with pytest.raises(ConflictError):
        store.apply(
            rec.id,
            "cancel",
            None,
            None,
            evidence=None,
            now=at(2),
            expected_case_version=rec.version,
        )
    assert store.get_case(rec.id).status is CaseState.SUBMITTED
    assert store.history() == before
    c, _ = store.apply(
        rec.id, "cancel", None, None, evidence=None, now=at(3), expected_case_version=2
    )
    assert c is not None and c.version == 3


def test_notes_are_audited(store: Store) -> None:
    _gpus(store, "h/g0")
    rec, _ = store.register_case("/c1", T0)
    c = store.update_case(
        rec.id, at(1), detail="backoff", transient_failures=2, next_attempt_at=at(60)
    )
    assert c.transient_failures == 2 and c.next_attempt_at == at(60)
    g = store.update_gpu("h/g0", at(2), detail="check later", next_check_at=at(30))
    assert g.next_check_at == at(30)
    notes = [
        (r.entity, r.trigger, r.from_state, r.to_state)
        for r in store.history()
        if r.trigger == "note"
    ]
    assert notes == [
        ("case", "note", "submitted", "submitted"),
        ("gpu", "note", "available", "available"),
    ]
    assert "transient_failures=2" in store.history(case_id=rec.id)[-1].detail


def test_reads_filter_count_and_limit(store: Store) -> None:
    ids = [store.register_case(f"/c{i}", at(i))[0].id for i in range(5)]
    store.apply(ids[1], "fail", None, None, evidence=None, now=at(9), failure_reason="bad")
    live = store.list_cases([CaseState.SUBMITTED, CaseState.RUNNING])
    assert [c.id for c in live] == [ids[0], ids[2], ids[3], ids[4]]
    assert [c.id for c in store.list_cases(limit=2, offset=1)] == ids[1:3]
    assert store.list_cases([]) == []
    counts = store.count_by_status()
    assert counts[CaseState.SUBMITTED] == 4 and counts[CaseState.FAILED] == 1
    assert counts[CaseState.COMPLETED] == 0
    last = store.history(limit=2)
    assert [r.id for r in last] == [r.id for r in store.history()][-2:]
