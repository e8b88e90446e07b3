"""plan_step: a case move and its GPU move belong together, or nothing happens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mqi_communicator.errors import GuardRejectedError, InvalidTransitionError
from mqi_communicator.statemachine import (
    CaseFacts,
    CaseState,
    Evidence,
    EvidenceKind,
    GpuFacts,
    GpuState,
    plan_step,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PROOF = Evidence(EvidenceKind.OBSERVED_TERMINAL, "L1", NOW)


def test_claim_with_assign() -> None:
    step = plan_step(
        CaseFacts(1, "submitted", "L1"), "claim", GpuFacts("g", "available", 1), "assign"
    )
    assert (step.case_to, step.gpu_to) == (CaseState.SUBMITTING, GpuState.ASSIGNED)


def test_claim_without_gpu_is_refused() -> None:
    with pytest.raises(InvalidTransitionError, match="assign"):
        plan_step(CaseFacts(1, "submitted", "L1"), "claim", None, None)


def test_leaving_running_needs_release_or_quarantine() -> None:
    with pytest.raises(InvalidTransitionError, match="released or quarantined"):
        plan_step(CaseFacts(1, "running", "L1"), "fail", None, None)
    gpu = GpuFacts("g", "assigned", 1, "L1")
    done = plan_step(CaseFacts(1, "running", "L1"), "job_succeeded", gpu, "release", PROOF)
    assert done.gpu_to is GpuState.AVAILABLE
    zombie = plan_step(CaseFacts(1, "running", "L1"), "fail", gpu, "quarantine")
    assert zombie.gpu_to is GpuState.ZOMBIE


def test_release_without_evidence_refused_even_with_valid_case_move() -> None:
    with pytest.raises(GuardRejectedError):
        plan_step(
            CaseFacts(1, "running", "L1"), "fail", GpuFacts("g", "assigned", 1, "L1"), "release"
        )


def test_gpu_of_another_case_cannot_be_moved() -> None:
    with pytest.raises(InvalidTransitionError, match="holds case 2"):
        plan_step(
            CaseFacts(1, "running", "L1"), "fail", GpuFacts("g", "assigned", 2, "L1"), "quarantine"
        )


def test_gpu_bound_trigger_without_case_refused() -> None:
    with pytest.raises(InvalidTransitionError):
        plan_step(None, None, GpuFacts("g", "assigned", 1, "L1"), "quarantine")


def test_case_move_that_keeps_gpu_must_not_touch_it() -> None:
    assert plan_step(CaseFacts(1, "submitting", "L1"), "confirm_submitted", None, None).case_to is (
        CaseState.RUNNING
    )
    with pytest.raises(InvalidTransitionError):
        plan_step(
            CaseFacts(1, "submitting", "L1"),
            "confirm_submitted",
            GpuFacts("g", "assigned", 1, "L1"),
            "quarantine",
        )


def test_gpu_only_moves() -> None:
    assert plan_step(None, None, GpuFacts("g", "zombie", None, "L1"), "recover", PROOF).gpu_to is (
        GpuState.AVAILABLE
    )
    assert (
        plan_step(None, None, GpuFacts("g", "available"), "take_offline").gpu_to is GpuState.OFFLINE
    )
    with pytest.raises(InvalidTransitionError):
        plan_step(CaseFacts(1, "failed"), "retry", GpuFacts("g", "offline"), "bring_online")


def test_empty_step_refused() -> None:
    with pytest.raises(InvalidTransitionError):
        plan_step(None, None, None, None)
