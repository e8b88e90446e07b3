"""Outcomes apply only to their own attempt (compare-and-set), and the case lease.

Both backends. The scenario of issue 8: attempt 1 was taken over (released as never
submitted, requeued) and attempt 2 claimed the same GPU; attempt 1's late error must
not fail attempt 2 nor release its GPU.
"""

from __future__ import annotations

import time

import pytest

from mqi_communicator.errors import ConflictError, StaleOutcomeError
from mqi_communicator.persistence import CaseRecord, Store
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind, GpuState
from tests.persistence.conftest import T0, at, label_plan


def _snapshot(store: Store) -> tuple[object, ...]:
    return (store.list_cases(), store.list_gpus(), store.history())


def _taken_over(store: Store) -> tuple[CaseRecord, CaseRecord]:
    """Attempt 1 claimed, then recovered by 'another engine' and attempt 2 claimed."""
    store.sync_gpus([("h/g0", "h")], T0)
    rec, _ = store.register_case("/c1", T0)
    first = store.claim(rec.id, at(1), label_plan)
    assert first is not None and first[0].label == "mqi-1-a1"
    gone = Evidence(EvidenceKind.NEVER_SUBMITTED, "mqi-1-a1", at(2))
    store.apply(rec.id, "requeue", None, "release", evidence=gone, now=at(2))
    second = store.claim(rec.id, at(3), label_plan)
    assert second is not None and second[0].label == "mqi-1-a2"
    return first[0], second[0]


def test_a_stale_attempts_error_neither_fails_the_case_nor_frees_its_gpu(store: Store) -> None:
    old, new = _taken_over(store)
    before = _snapshot(store)
    # Exactly what the engine did with attempt 1's upload error after reloading the row.
    gone = Evidence(EvidenceKind.NEVER_SUBMITTED, new.label, at(4))
    with pytest.raises(StaleOutcomeError) as caught:
        store.apply(
            new.id,
            "fail",
            None,
            "release",
            evidence=gone,
            now=at(4),
            failure_reason="upload failed",
            expected_case_version=new.version,
            expected_attempt=old.attempt,
            expected_label=old.label,
        )
    assert isinstance(caught.value, ConflictError)
    assert (caught.value.expected_attempt, caught.value.actual_attempt) == (1, 2)
    assert _snapshot(store) == before
    gpu = store.get_gpu("h/g0")
    assert gpu.status is GpuState.ASSIGNED and gpu.job_label == "mqi-1-a2"
    assert store.get_case(new.id).status is CaseState.SUBMITTING


@pytest.mark.parametrize(
    ("attempt", "label"), [(1, None), (None, "mqi-1-a1"), (2, "mqi-1-a1"), (1, "mqi-1-a2")]
)
def test_either_half_of_the_attempt_key_refuses(
    store: Store, attempt: int | None, label: str | None
) -> None:
    _, new = _taken_over(store)
    before = _snapshot(store)
    with pytest.raises(StaleOutcomeError):
        store.apply(
            new.id,
            "confirm_submitted",
            None,
            None,
            evidence=None,
            now=at(4),
            job_id="7",
            expected_attempt=attempt,
            expected_label=label,
        )
    assert _snapshot(store) == before


def test_the_outcome_of_the_current_attempt_applies(store: Store) -> None:
    _, new = _taken_over(store)
    running, gpu = store.apply(
        new.id,
        "confirm_submitted",
        None,
        None,
        evidence=None,
        now=at(4),
        job_id="7",
        expected_attempt=2,
        expected_label="mqi-1-a2",
    )
    assert running is not None and running.status is CaseState.RUNNING
    assert gpu is not None and gpu.job_id == "7"


def test_a_stale_note_writes_nothing(store: Store) -> None:
    old, new = _taken_over(store)
    before = _snapshot(store)
    with pytest.raises(StaleOutcomeError):
        store.update_case(
            new.id,
            at(4),
            detail="job started",
            expected_attempt=old.attempt,
            expected_label=old.label,
            started_at=at(4),
        )
    assert _snapshot(store) == before
    noted = store.update_case(
        new.id, at(5), detail="uploaded", expected_attempt=2, expected_label=new.label, progress=30
    )
    assert noted.progress == 30


def test_a_gpu_step_checks_the_gpus_job_label(store: Store) -> None:
    _, new = _taken_over(store)
    before = _snapshot(store)
    gone = Evidence(EvidenceKind.CONFIRMED_ABSENT, "mqi-1-a1", at(4))
    with pytest.raises(StaleOutcomeError):
        store.apply(
            None, None, "h/g0", "quarantine", evidence=gone, now=at(4), expected_label="mqi-1-a1"
        )
    with pytest.raises(ValueError, match="needs a case"):
        store.apply(None, None, "h/g0", "quarantine", evidence=None, now=at(4), expected_attempt=1)
    assert _snapshot(store) == before
    assert new.gpu_name == "h/g0"


# -- leases ----------------------------------------------------------------------------


def _claimed(store: Store, owner: str, ttl_s: float) -> CaseRecord:
    store.sync_gpus([("h/g0", "h")], T0)
    rec, _ = store.register_case("/c1", T0)
    out = store.claim(rec.id, at(1), label_plan, lease=(owner, ttl_s))
    assert out is not None
    return out[0]


def test_the_claim_takes_the_lease_and_only_its_owner_renews_it(store: Store) -> None:
    case = _claimed(store, "engine-A", 600)
    assert case.lease_owner == "engine-A"
    assert case.lease_expires_at is not None and case.lease_expires_at > store.database_time()
    assert store.take_lease(case.id, "engine-B", 600, expected_version=case.version) is None
    assert store.renew_lease(case.id, "engine-B", 600) is False
    first_expiry = case.lease_expires_at
    assert store.renew_lease(case.id, "engine-A", 600) is True
    renewed = store.get_case(case.id)
    assert renewed.lease_owner == "engine-A"
    assert renewed.lease_expires_at is not None and renewed.lease_expires_at >= first_expiry
    # Lease writes are not case changes: a version seen before still applies.
    assert renewed.version == case.version
    # The owner ends its lease: any engine may take the case now, at the same version.
    assert store.release_lease(case.id, "engine-B") is False
    assert store.release_lease(case.id, "engine-A") is True
    taken = store.take_lease(case.id, "engine-B", 600, expected_version=case.version)
    assert taken is not None and taken.lease_owner == "engine-B"
    assert store.renew_lease(case.id, "engine-A", 600) is False


def test_an_unrenewed_lease_expires_by_the_database_clock(store: Store) -> None:
    case = _claimed(store, "engine-A", 0.5)
    assert store.take_lease(case.id, "engine-B", 600, expected_version=case.version) is None
    expires = case.lease_expires_at
    assert expires is not None
    deadline = time.monotonic() + 30
    while store.database_time() <= expires:
        assert time.monotonic() < deadline, "the database clock never passed the expiry"
        time.sleep(0.05)
    taken = store.take_lease(case.id, "engine-B", 600, expected_version=case.version)
    assert taken is not None and taken.lease_owner == "engine-B"
    # The late owner learns it lost the case.
    assert store.renew_lease(case.id, "engine-A", 600) is False


def test_a_lease_is_taken_only_on_the_case_as_seen(store: Store) -> None:
    case = _claimed(store, "engine-A", 0.01)
    store.update_case(case.id, at(2), detail="uploaded", progress=30)
    # Expired or not, a case that changed since it was read is not taken.
    assert store.take_lease(case.id, "engine-B", 600, expected_version=case.version) is None


def test_a_status_change_erases_the_lease(store: Store) -> None:
    case = _claimed(store, "engine-A", 600)
    moved, _ = store.apply(
        case.id, "confirm_submitted", None, None, evidence=None, now=at(2), job_id="7"
    )
    assert moved is not None
    assert (moved.lease_owner, moved.lease_expires_at) == (None, None)
