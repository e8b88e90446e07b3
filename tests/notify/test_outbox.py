"""Events are written in the transaction of their transition, and only then (both backends)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from mqi_communicator import Evidence, EvidenceKind
from mqi_communicator.config.hooks import HookEvent
from mqi_communicator.errors import GuardRejectedError
from mqi_communicator.persistence import Store
from mqi_communicator.persistence.models import HookOutbox
from mqi_communicator.persistence.outbox import EventKind, event_kind, outbox_stats
from tests.persistence.conftest import T0, at, label_plan


def rows(store: Store) -> list[HookOutbox]:
    return list(store.read(lambda s: s.scalars(select(HookOutbox).order_by(HookOutbox.id)).all()))


def running_case(store: Store) -> tuple[int, str]:
    store.sync_gpus([("h/g0", "h")], T0)
    rec, _ = store.register_case("/cases/patient 1", T0)
    out = store.claim(rec.id, at(1), label_plan)
    assert out is not None
    store.apply(rec.id, "confirm_submitted", None, None, evidence=None, now=at(2), job_id="7")
    return rec.id, out[0].label or ""


def test_config_event_names_are_the_event_kinds() -> None:
    assert set(HookEvent.__args__) == {k.value for k in EventKind}  # type: ignore[attr-defined]


def test_event_kind_rule() -> None:
    assert event_kind("case", "running", "failed") is EventKind.CASE_FAILED
    assert event_kind("case", "retrieving", "completed") is EventKind.CASE_COMPLETED
    assert event_kind("gpu", "assigned", "zombie") is EventKind.GPU_ZOMBIE
    assert event_kind("gpu", "zombie", "offline") is EventKind.GPU_RECOVERED
    assert event_kind("case", "failed", "failed") is None  # a note
    assert event_kind("gpu", "assigned", "available") is None
    assert event_kind("case", "running", "submitted") is None


def test_zombie_and_failure_events_are_committed_with_the_transition(store: Store) -> None:
    case_id, label = running_case(store)
    assert rows(store) == []
    ev = Evidence(EvidenceKind.UNREACHABLE, label, at(3), detail="kill not confirmed")
    store.apply(
        case_id, "fail", None, "quarantine", evidence=ev, now=at(3), failure_reason="timed out"
    )
    failed, zombie = rows(store)
    assert (failed.kind, zombie.kind) == ("case_failed", "gpu_zombie")
    doc = json.loads(failed.payload)
    assert doc["event"] == "case_failed" and doc["event_id"] == failed.event_id
    assert doc["case"]["id"] == case_id and doc["case"]["name"] == "patient 1"
    assert doc["reason"] == "timed out" and doc["evidence"]["kind"] == "unreachable"
    zdoc = json.loads(zombie.payload)
    assert zdoc["gpu"] == {"name": "h/g0"} and zdoc["case"]["label"] == label
    assert zdoc["transition"] == {"from": "assigned", "to": "zombie", "trigger": "quarantine"}

    # A refused recovery (no evidence) rolls back: no transition, so no event either.
    with pytest.raises(GuardRejectedError):
        store.apply(None, None, "h/g0", "recover", evidence=None, now=at(4))
    assert len(rows(store)) == 2
    proof = Evidence(EvidenceKind.CONFIRMED_ABSENT, label, at(5))
    store.apply(None, None, "h/g0", "recover", evidence=proof, now=at(5))
    kinds = [r.kind for r in rows(store)]
    assert kinds == ["case_failed", "gpu_zombie", "gpu_recovered"]
    assert len({r.event_id for r in rows(store)}) == 3
    stats = outbox_stats_of(store)
    assert stats["pending"] == 3 and stats["failures_total"] == 0


def outbox_stats_of(store: Store) -> dict[str, int]:
    return store.read(outbox_stats)
