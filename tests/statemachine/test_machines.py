"""The case and GPU machines: every table row works, everything else is refused loudly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mqi_communicator.errors import GuardRejectedError, InvalidTransitionError
from mqi_communicator.statemachine import (
    CASE_TRANSITIONS,
    GPU_TRANSITIONS,
    CaseFacts,
    CaseState,
    Evidence,
    EvidenceKind,
    GpuFacts,
    GpuState,
    fire_case,
    fire_gpu,
    legal_triggers,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALL_TRIGGERS = {s.trigger for s in CASE_TRANSITIONS} | {s.trigger for s in GPU_TRANSITIONS}


def ev(kind: EvidenceKind, label: str | None = "L1", **kw: object) -> Evidence:
    return Evidence(kind, label, T0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("state", list(CaseState))
@pytest.mark.parametrize("trigger", sorted(ALL_TRIGGERS))
def test_case_trigger_not_in_table_raises_naming_state_and_trigger(
    state: CaseState, trigger: str
) -> None:
    legal = legal_triggers("case", state.value)
    if trigger in legal:
        return
    with pytest.raises(InvalidTransitionError) as info:
        fire_case(CaseFacts(1, state.value, "L1"), trigger)
    assert state.value in str(info.value) and trigger in str(info.value)
    assert info.value.machine == "case"


def test_case_happy_path() -> None:
    state = CaseState.SUBMITTED
    for trigger, expected in [
        ("claim", CaseState.SUBMITTING),
        ("confirm_submitted", CaseState.RUNNING),
        ("job_succeeded", CaseState.RETRIEVING),
        ("retrieved", CaseState.COMPLETED),
    ]:
        state = fire_case(CaseFacts(1, state.value, "L1"), trigger)
        assert state is expected


def test_claim_needs_a_label() -> None:
    with pytest.raises(GuardRejectedError):
        fire_case(CaseFacts(1, "submitted", None), "claim")


def test_terminal_states_only_leave_by_operator_retry() -> None:
    for state in (CaseState.COMPLETED, CaseState.FAILED, CaseState.CANCELLED):
        legal = legal_triggers("case", state.value)
        expected = {
            CaseState.COMPLETED: [],
            # A case that failed in retrieval may have its results downloaded again.
            CaseState.FAILED: ["retry", "retry_retrieval"],
            CaseState.CANCELLED: ["retry"],
        }
        assert legal == expected[state]


@pytest.mark.parametrize(
    "evidence",
    [
        None,
        ev(EvidenceKind.KILL_REQUESTED),
        ev(EvidenceKind.SUBMIT_ACCEPTED),
        ev(EvidenceKind.UNREACHABLE),
        ev(EvidenceKind.KILL_UNCONFIRMED),
        ev(EvidenceKind.OPERATOR),
        ev(EvidenceKind.OBSERVED_TERMINAL, label="stranger"),
        ev(EvidenceKind.CONFIRMED_ABSENT, label="L2"),
        # a "confirmation" observed before the kill was even requested proves nothing
        ev(EvidenceKind.KILL_CONFIRMED, requested_at=T0),
        ev(EvidenceKind.KILL_CONFIRMED, requested_at=T0 + timedelta(seconds=1)),
        ev(EvidenceKind.KILL_CONFIRMED),
    ],
)
@pytest.mark.parametrize("state,trigger", [("assigned", "release"), ("zombie", "recover")])
def test_gpu_never_freed_without_termination_evidence_for_its_own_job(
    evidence: Evidence | None, state: str, trigger: str
) -> None:
    gpu = GpuFacts("h/g0", state, case_id=1 if state == "assigned" else None, job_label="L1")
    with pytest.raises(GuardRejectedError) as info:
        fire_gpu(gpu, trigger, evidence)
    assert info.value.reason


@pytest.mark.parametrize(
    "evidence",
    [
        ev(EvidenceKind.OBSERVED_TERMINAL),
        ev(EvidenceKind.CONFIRMED_ABSENT),
        ev(EvidenceKind.NEVER_SUBMITTED),
        ev(EvidenceKind.KILL_CONFIRMED, requested_at=T0 - timedelta(seconds=1)),
    ],
)
def test_gpu_freed_with_termination_evidence(evidence: Evidence) -> None:
    assert (
        fire_gpu(GpuFacts("h/g0", "assigned", 1, "L1"), "release", evidence) is GpuState.AVAILABLE
    )
    assert (
        fire_gpu(GpuFacts("h/g0", "zombie", None, "L1"), "recover", evidence) is GpuState.AVAILABLE
    )


def test_offline_requested_routes_release_to_offline_and_blocks_assign() -> None:
    proof = ev(EvidenceKind.OBSERVED_TERMINAL)
    draining = GpuFacts("h/g0", "assigned", 1, "L1", offline_requested=True)
    assert fire_gpu(draining, "release", proof) is GpuState.OFFLINE
    zombie = GpuFacts("h/g0", "zombie", None, "L1", offline_requested=True)
    assert fire_gpu(zombie, "recover", proof) is GpuState.OFFLINE
    with pytest.raises(GuardRejectedError, match="offline"):
        fire_gpu(GpuFacts("h/g0", "available", 1, None, offline_requested=True), "assign")


def test_quarantine_needs_no_evidence_but_only_from_assigned() -> None:
    assert fire_gpu(GpuFacts("h/g0", "assigned", 1, "L1"), "quarantine") is GpuState.ZOMBIE
    for state in ("available", "zombie", "offline"):
        with pytest.raises(InvalidTransitionError):
            fire_gpu(GpuFacts("h/g0", state), "quarantine")


@pytest.mark.parametrize("missing", [None, ""])
@pytest.mark.parametrize("trigger,state", [("recover", "zombie"), ("release", "assigned")])
def test_evidence_without_a_label_never_frees_a_gpu(
    missing: str | None, trigger: str, state: str
) -> None:
    # "no label" == "no label" is an accident, not a match (issue 8, item 4).
    for gpu_label in (None, "", "mqic_case_5"):
        gpu = GpuFacts("g0", state, 1 if state == "assigned" else None, gpu_label)
        for kind in (EvidenceKind.CONFIRMED_ABSENT, EvidenceKind.OBSERVED_TERMINAL):
            with pytest.raises(GuardRejectedError, match=r"without a label|holds"):
                fire_gpu(gpu, trigger, ev(kind, label=missing))
    unlabelled = GpuFacts("g0", state, 1 if state == "assigned" else None, missing)
    with pytest.raises(GuardRejectedError, match="without a label"):
        fire_gpu(unlabelled, trigger, ev(EvidenceKind.CONFIRMED_ABSENT, label="L1"))
    # A legacy label is matched like any other.
    legacy = GpuFacts("g0", state, 1 if state == "assigned" else None, "mqic_case_5")
    with pytest.raises(GuardRejectedError):
        fire_gpu(legacy, trigger, ev(EvidenceKind.CONFIRMED_ABSENT, label="mqic_case_50"))
    found = ev(EvidenceKind.CONFIRMED_ABSENT, label="mqic_case_5")
    assert fire_gpu(legacy, trigger, found) is GpuState.AVAILABLE


def attested(reason: str = "host reinstalled", actor: str | None = "ops@pc1") -> Evidence:
    return Evidence(EvidenceKind.OPERATOR_ATTESTED, None, T0, detail=reason, actor=actor)


def test_operator_release_needs_attested_evidence_with_who_and_why() -> None:
    zombie = GpuFacts("gpu0", "zombie", None, None)
    assert fire_gpu(zombie, "operator_release", attested()) is GpuState.AVAILABLE
    drained = GpuFacts("gpu0", "zombie", None, "L1", offline_requested=True)
    assert fire_gpu(drained, "operator_release", attested()) is GpuState.OFFLINE
    for bad in (
        None,
        attested(reason="  "),
        attested(actor=None),
        ev(EvidenceKind.CONFIRMED_ABSENT, label="L1"),
        ev(EvidenceKind.OPERATOR, detail="why"),
    ):
        with pytest.raises(GuardRejectedError, match="operator_attested"):
            fire_gpu(GpuFacts("gpu0", "zombie", None, "L1"), "operator_release", bad)


def test_attested_word_is_not_engine_evidence_and_only_zombies_take_it() -> None:
    # The engine's triggers stay strict: the operator's word never passes them.
    with pytest.raises(GuardRejectedError):
        fire_gpu(GpuFacts("gpu0", "zombie", None, "L1"), "recover", attested())
    with pytest.raises(GuardRejectedError):
        fire_gpu(GpuFacts("gpu0", "assigned", 1, "L1"), "release", attested())
    for state in ("available", "assigned", "offline"):
        with pytest.raises(InvalidTransitionError):
            fire_gpu(GpuFacts("gpu0", state, None, "L1"), "operator_release", attested())


def test_attested_evidence_round_trips_with_its_actor() -> None:
    e = attested()
    assert Evidence.from_json(e.to_json()) == e
    assert '"actor"' not in ev(EvidenceKind.OPERATOR).to_json()


def test_evidence_round_trips_through_json() -> None:
    e = ev(
        EvidenceKind.KILL_CONFIRMED, job_id="7", requested_at=T0 - timedelta(seconds=3), detail="é"
    )
    assert Evidence.from_json(e.to_json()) == e
