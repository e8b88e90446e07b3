"""Several processes, each with its own connections, race to claim and free GPUs.

The workers are real separate processes (multiprocessing, spawn). Nothing coordinates
them except the database: SQLite's BEGIN IMMEDIATE + busy timeout, PostgreSQL's
FOR UPDATE (SKIP LOCKED). The audit trail must show no GPU ever held two cases.
"""

from __future__ import annotations

import multiprocessing as mp
import random
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from mqi_communicator.errors import ConflictError
from mqi_communicator.persistence import CaseRecord, GpuRecord, Store
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind, GpuState

WORKERS = 4
CASES = 30
GPUS = 5


def _plan(case: CaseRecord, gpu: GpuRecord) -> tuple[str, str]:
    return f"mqi-{case.id}-a{case.attempt}", f"/r/{case.id}"


def _worker(url: str, seed: int, cycle: bool, go: Any, out: Any) -> None:
    """Claim every case in a random order; with ``cycle``, free the GPU right away."""
    store = Store.open(url)
    claimed = 0
    conflicts = 0
    try:
        ids = [c.id for c in store.list_cases()]
        random.Random(seed).shuffle(ids)
        go.wait(30)
        for case_id in ids:
            for _ in range(20):
                try:
                    got = store.claim(case_id, datetime.now(UTC), _plan)
                    break
                except ConflictError:
                    conflicts += 1
            else:
                raise RuntimeError("claim kept conflicting")
            if got is None:
                continue
            claimed += 1
            if cycle:
                case, _ = got
                ev = Evidence(EvidenceKind.NEVER_SUBMITTED, case.label, datetime.now(UTC))
                store.apply(case_id, "fail", None, "release", evidence=ev, now=datetime.now(UTC))
        out.put((seed, claimed, conflicts, None))
    except BaseException as err:  # report to the parent instead of dying silently
        out.put((seed, claimed, conflicts, repr(err)))
    finally:
        store.close()


def _race(url: str, cycle: bool) -> list[tuple[int, int, int, str | None]]:
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, seed, cycle, go, out)) for seed in range(WORKERS)
    ]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert [r[3] for r in results] == [None] * WORKERS, results
    return results


def _setup(url: str) -> None:
    with Store.open(url) as store:
        store.sync_gpus([(f"h/g{i}", "h") for i in range(GPUS)], datetime.now(UTC))
        for i in range(CASES):
            store.register_case(f"/cases/c{i:02d}", datetime.now(UTC))


@pytest.mark.slow
def test_racing_claims_never_double_claim(store_url: str) -> None:
    _setup(store_url)
    results = _race(store_url, cycle=False)
    assert sum(r[1] for r in results) == GPUS  # every GPU taken exactly once in total
    with Store.open(store_url) as store:
        busy = store.list_cases([CaseState.SUBMITTING])
        gpus = store.list_gpus()
        assert len(busy) == GPUS
        assert sorted(c.gpu_name or "" for c in busy) == sorted(g.name for g in gpus)
        for g in gpus:
            assert g.status is GpuState.ASSIGNED
            holder = store.get_case(g.case_id or -1)
            assert holder.gpu_name == g.name and holder.label == g.job_label
        assigns = [r for r in store.history() if r.trigger == "assign"]
        assert len(assigns) == GPUS


@pytest.mark.slow
def test_racing_claim_and_release_cycles_keep_gpus_exclusive(store_url: str) -> None:
    _setup(store_url)
    results = _race(store_url, cycle=True)
    with Store.open(store_url) as store:
        failed = store.list_cases([CaseState.FAILED])
        assert sum(r[1] for r in results) == len(failed)  # each case claimed at most once
        assert all(g.status is GpuState.AVAILABLE for g in store.list_gpus())
        # Replay each GPU's audit trail: strictly assign(c), release(c), assign(d), ...
        per_gpu: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
        claims: dict[int, int] = defaultdict(int)
        for r in store.history():
            if r.entity == "gpu" and r.trigger in {"assign", "release"}:
                per_gpu[r.gpu_name or ""].append((r.trigger, r.case_id))
            if r.entity == "case" and r.trigger == "claim":
                claims[r.case_id or -1] += 1
        assert max(claims.values()) == 1
        for name, events in per_gpu.items():
            kinds = [k for k, _ in events]
            assert kinds == ["assign", "release"] * (len(events) // 2), name
            for (_, a), (_, b) in zip(events[::2], events[1::2], strict=True):
                assert a == b, f"{name}: released case {b} while holding {a}"
