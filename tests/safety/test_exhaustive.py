"""Exhaustive check of the abstract machines: no bug exists up to the explored depth.

Worlds explored (figures are printed with ``pytest -s`` and recorded as properties):

* 2 cases x 2 GPUs, every interleaving up to depth 10 -- the safety invariants in every
  state; from every state up to depth 8, the healing schedule must bring every case home
  within ``HEAL_BOUND`` reconcile steps (liveness);
* 1 case x 2 GPUs up to depth 14 -- deep enough for timeout -> ignored kill -> zombie ->
  operator retry on the other GPU -> recovery, with liveness from every state.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mqi_communicator.statemachine import decide as decide_module
from mqi_communicator.statemachine.decide import Policy, Wait

from .abstract_world import Rules, initial_world
from .explorer import Report, explore
from .planted import broken_decision, broken_guard, release_on_kill_request

#: Requeues allowed by the policy (attempt 1 and 2); operator retries stop at attempt 3.
POLICY = Policy(max_attempts=2)
#: Reconcile steps the healing schedule may take: per case claim, submit, poll (start),
#: poll (end), retrieve, plus a requeue round, and one zombie check per GPU. The
#: explorer reports the most it ever needed (``max_heal_steps``).
HEAL_BOUND = 30

RecordProperty = Callable[[str, object], None]


def _run(
    record_property: RecordProperty,
    name: str,
    n_cases: int,
    n_gpus: int,
    depth: int,
    liveness: bool,
) -> Report:
    report = explore(
        Rules(POLICY),
        initial_world(n_cases, n_gpus),
        depth,
        liveness_bound=HEAL_BOUND if liveness else None,
    )
    print(f"\n[exhaustive {name}] cases={n_cases} gpus={n_gpus} {report.summary()}")
    record_property(f"{name}_depth", report.depth)
    record_property(f"{name}_states", report.states)
    record_property(f"{name}_transitions", report.transitions)
    record_property(f"{name}_seconds", round(report.seconds, 1))
    return report


def _assert_clean(report: Report) -> None:
    assert not report.violation, f"{report.summary()}\n{report.counterexample()}"
    assert not report.rejected, f"{report.summary()}\ndecisions refused: {report.rejected[:5]}"
    assert not report.stuck, f"{report.summary()}\nnot live: {report.stuck}"
    # The search must actually reach the dangerous situations, or it proves nothing.
    for feature, count in report.coverage.items():
        if feature != "both_gpus_busy":
            assert count > 0, f"never reached {feature}: {report.summary()}"


def test_two_cases_two_gpus_depth_10(record_property: RecordProperty) -> None:
    report = _run(record_property, "2x2", 2, 2, 10, liveness=False)
    _assert_clean(report)
    assert report.coverage["both_gpus_busy"] > 0
    assert report.per_depth[-1] > 0, "the search ran out of states before depth 10"


def test_two_cases_two_gpus_liveness_depth_8(record_property: RecordProperty) -> None:
    report = _run(record_property, "2x2_live", 2, 2, 8, liveness=True)
    _assert_clean(report)
    assert report.max_heal_steps <= HEAL_BOUND


def test_one_case_two_gpus_depth_14(record_property: RecordProperty) -> None:
    report = _run(record_property, "1x2_live", 1, 2, 14, liveness=True)
    _assert_clean(report)


def test_planted_release_on_kill_request_is_found(record_property: RecordProperty) -> None:
    with release_on_kill_request():
        report = _run(record_property, "planted", 2, 2, 10, liveness=False)
    assert report.violation, f"the planted bug went unnoticed: {report.summary()}"
    text = report.counterexample()
    print(text)
    assert any(v.startswith("unkilled-gpu-free") for v in report.violation), text
    assert any("kill" in e for e in report.trace), text


def test_guard_alone_stops_the_decision_bug() -> None:
    """Defence in depth: a decision that frees on a kill request is refused by the guard."""
    with broken_decision():
        report = explore(Rules(POLICY), initial_world(1, 2), 8)
    assert not report.violation, report.counterexample()
    assert report.rejected, "the broken decision was never even tried"
    assert all("refused" in r.error for r in report.rejected), report.rejected[:3]


def test_broken_guard_alone_is_masked_by_decisions() -> None:
    """The decisions never offer a kill request as evidence, so the broken guard is inert."""
    with broken_guard():
        report = explore(Rules(POLICY), initial_world(1, 2), 8)
    assert not report.violation, report.counterexample()


def test_planted_bug_restored_afterwards() -> None:
    """After the context ends, the real rules are back (the next exploration is clean)."""
    with release_on_kill_request():
        assert explore(Rules(POLICY), initial_world(1, 2), 6).violation
    report = explore(Rules(POLICY), initial_world(1, 2), 8)
    assert not report.violation, report.counterexample()
    assert not report.rejected


def test_liveness_check_can_fail() -> None:
    """A reconciler that never recovers a zombie GPU is caught by the healing check."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decide_module, "decide_zombie", lambda gpu, obs: Wait("planted: never"))
        report = explore(Rules(POLICY), initial_world(1, 2), 6, liveness_bound=HEAL_BOUND)
    assert not report.violation, report.counterexample()
    assert report.stuck, "a zombie that never recovers went unnoticed"


def test_late_submits_are_revoked_before_release() -> None:
    """A submit cut off by the network may still land AFTER ``find_by_label`` said "no".

    Recovery revokes the job's start before it frees the GPU (modelled in the abstract
    world as dropping the submit still on its way: it can only land as a no-op). The
    engine-level check of the same race is ``test_late_submit.py``.
    """
    report = explore(Rules(POLICY, late_submits=True), initial_world(1, 2), 6)
    assert not report.violation, report.counterexample()
    assert not report.rejected, report.rejected[:3]
