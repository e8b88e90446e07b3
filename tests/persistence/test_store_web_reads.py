"""The web console's reads on both backends: keyset pages and audit-trail aggregates."""

from __future__ import annotations

from mqi_communicator.persistence import Store
from mqi_communicator.persistence.store_stats import (
    audit_aggregate,
    count_gpus_by_status,
    last_transition_id,
    settled_transition_id,
)
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind, GpuState

from .conftest import T0, at, label_plan

TIMED = {"running": (10.0, 100.0), "retrieving": (1.0,)}


def test_page_cases_keyset_filter_and_literal_search(store: Store) -> None:
    for i in range(1, 8):
        store.register_case(f"/data/case_{i:02d}", at(i))
    store.register_case("/data/100% done", at(9))
    store.register_case("/data/caseX01", at(10))  # "_" must not match any character
    store.apply(3, "fail", None, None, evidence=None, now=at(11))
    first = store.page_cases(limit=4)
    assert [c.id for c in first] == [9, 8, 7, 6]
    second = store.page_cases(limit=4, before_id=first[-1].id)
    assert [c.id for c in second] == [5, 4, 3, 2]
    assert [c.id for c in store.page_cases(limit=4, before_id=2)] == [1]
    assert [c.id for c in store.page_cases(state=CaseState.FAILED)] == [3]
    assert [c.name for c in store.page_cases(search="CASE_0")] == [
        f"case_{i:02d}" for i in range(7, 0, -1)
    ]
    assert [c.name for c in store.page_cases(search="100%")] == ["100% done"]
    assert store.page_cases(search="%") == store.page_cases(search="100%")
    assert store.page_cases(state=CaseState.RUNNING, search="case") == []


def _run_one(store: Store, path: str, start: float, run_s: float) -> None:
    """Register, claim, run for ``run_s`` seconds, then succeed and retrieve in 0.5 s."""
    case, _ = store.register_case(path, at(start))
    store.claim(case.id, at(start + 1), label_plan)
    store.apply(case.id, "confirm_submitted", None, None, evidence=None, now=at(start + 2))
    done = at(start + 2 + run_s)
    gone = Evidence(EvidenceKind.OBSERVED_TERMINAL, f"mqi-{case.id}-a1", done)
    gpu = store.get_case(case.id).gpu_name
    store.apply(case.id, "job_succeeded", gpu, "release", evidence=gone, now=done)
    store.apply(case.id, "retrieved", None, None, evidence=None, now=at(start + 2.5 + run_s))


def test_audit_aggregate_counts_and_times_stays_and_adds_up_by_ranges(store: Store) -> None:
    store.sync_gpus([("h/g0", "h")], T0)
    _run_one(store, "/c1", 0, 5.0)
    _run_one(store, "/c2", 100, 50.0)
    with store.reading() as s:
        top = last_transition_id(s)
        whole = audit_aggregate(s, 0, top, TIMED)
        assert count_gpus_by_status(s)[GpuState.AVAILABLE] == 1
        # Any split of the id range adds up to the whole (the metrics cache relies on it).
        for cut in range(top + 1):
            left = audit_aggregate(s, 0, cut, TIMED)
            left.add(audit_aggregate(s, cut, top, TIMED))
            assert left.transitions == whole.transitions
            for state in TIMED:
                assert left.durations[state].cumulative == whole.durations[state].cumulative
                assert left.durations[state].count == whole.durations[state].count
        assert settled_transition_id(s, 0, at(50)) < top
        assert settled_transition_id(s, 0, at(10_000)) == top
    assert whole.transitions[("case", "claim")] == 2
    assert whole.transitions[("gpu", "release")] == 2
    assert ("case", "note") not in whole.transitions
    running = whole.durations["running"]
    assert running.count == 2 and running.cumulative == [1, 2]  # 5 s <= 10 < 50 s <= 100
    assert abs(running.total_s - 55.0) < 1e-3
    retrieving = whole.durations["retrieving"]
    assert retrieving.cumulative == [2] and abs(retrieving.total_s - 1.0) < 1e-3
