"""The case and GPU machines: one ``transitions.Machine`` per kind, built once from the tables.

Firing adds a throwaway model (a snapshot of the row) to the kind's machine, triggers it
and removes it again, under the kind's lock: the engine fires from several threads (the
tick and the transfer workers), and ``add_model``/``remove_model`` change the machine.
Legality comes from the library (``get_triggers``), and the guards run in it; nothing
here scans the tables a second time.

The machines are pure: :func:`fire_case` and :func:`fire_gpu` take a snapshot and return
the next state, or raise. Nothing here does I/O, so a failing callback can never leave a
half-applied change (``transitions`` does not roll back callbacks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from transitions import Machine

from ..errors import GuardRejectedError, InvalidTransitionError
from .evidence import Evidence
from .guards import CASE_GUARDS, GPU_GUARDS, CaseFacts, GpuFacts
from .states import TERMINAL_CASE_STATES, CaseState, GpuState
from .tables import CASE_TRANSITIONS, GPU_TRANSITIONS, TransitionSpec
from .triggers import CaseTrigger, GpuTrigger, typed

__all__ = [
    "fire",
    "fire_case",
    "fire_gpu",
    "first_allowed",
    "legal_triggers",
    "may_fire",
    "sources_of",
]

F = TypeVar("F", CaseFacts, GpuFacts)
Guard = Callable[[Any, Evidence | None], bool]


class _Shot(Generic[F]):
    """The model ``transitions`` drives for one firing; ``state`` is its model attribute."""

    def __init__(self, facts: F, evidence: Evidence | None) -> None:
        self.state: str = str(facts.state)
        self.facts: F = facts
        self.evidence = evidence
        self.row: TransitionSpec | None = None


def _judge(guards: Mapping[str, Guard], name: str) -> Callable[[_Shot[Any]], bool]:
    # Looked up by name at each call: the guard tables stay the one place to change
    # (the planted-bug tests patch them).
    return lambda shot: guards[name](shot.facts, shot.evidence)


def _mark(spec: TransitionSpec) -> Callable[[_Shot[Any]], None]:
    def after(shot: _Shot[Any]) -> None:
        shot.row = spec  # which row fired: its effects are the step's

    return after


class _Kind:
    """One machine kind: its ``Machine``, built once, and the lock that serialises it."""

    def __init__(
        self,
        name: str,
        specs: Sequence[TransitionSpec],
        states: Sequence[str],
        guards: Mapping[str, Guard],
    ) -> None:
        self.name = name
        self.lock = threading.Lock()
        rows = [
            {
                "trigger": s.trigger.value,
                "source": [str(x) for x in s.source],
                "dest": str(s.dest),
                "conditions": [_judge(guards, n) for n in s.conditions],
                "unless": [_judge(guards, n) for n in s.unless],
                "after": [_mark(s)],
            }
            for s in specs
        ]
        self.machine = Machine(
            model=None,
            states=list(states),
            transitions=rows,
            initial=states[0],
            auto_transitions=False,
            ignore_invalid_triggers=False,
            model_attribute="state",
        )


_CASE = _Kind("case", CASE_TRANSITIONS, [s.value for s in CaseState], CASE_GUARDS)
_GPU = _Kind("gpu", GPU_TRANSITIONS, [s.value for s in GpuState], GPU_GUARDS)


def _kind(trigger: CaseTrigger | GpuTrigger) -> _Kind:
    return _CASE if isinstance(trigger, CaseTrigger) else _GPU


def legal_triggers(kind: str, state: str) -> list[CaseTrigger | GpuTrigger]:
    """The triggers that exist from ``state`` (guards not evaluated). ``kind``: case|gpu."""
    if kind == "case":
        return [CaseTrigger(t) for t in _CASE.machine.get_triggers(str(state))]
    return [GpuTrigger(t) for t in _GPU.machine.get_triggers(str(state))]


def sources_of(trigger: CaseTrigger | GpuTrigger) -> list[str]:
    """The states ``trigger`` may fire from (guards not evaluated)."""
    return [str(s) for s in _kind(trigger).machine.events[trigger.value].transitions]


def may_fire(
    facts: CaseFacts | GpuFacts, trigger: CaseTrigger | GpuTrigger, evidence: Evidence | None
) -> bool:
    """True when ``trigger`` is legal from ``facts.state`` and its guards pass."""
    kind = _kind(trigger)
    if trigger.value not in kind.machine.get_triggers(str(facts.state)):
        return False
    shot: _Shot[Any] = _Shot(facts, evidence)
    with kind.lock:
        kind.machine.add_model(shot, initial=shot.state)
        try:
            return bool(shot.may_trigger(trigger.value, shot))  # type: ignore[attr-defined]
        finally:
            kind.machine.remove_model(shot)


def first_allowed(
    facts: CaseFacts | GpuFacts,
    triggers: Sequence[CaseTrigger] | Sequence[GpuTrigger],
    evidence: Evidence | None,
) -> Any:
    """The first of ``triggers`` the machine allows (guards judged); else the first one.

    For an operation whose effect the table chooses by state (an operator's cancel):
    firing the fallback raises the error that explains the refusal.
    """
    for trigger in triggers:
        if may_fire(facts, trigger, evidence):
            return trigger
    return triggers[0]


def fire(
    facts: CaseFacts | GpuFacts, trigger: CaseTrigger | GpuTrigger, evidence: Evidence | None
) -> tuple[str, TransitionSpec]:
    """Fire ``trigger`` on a snapshot: the new state and the table row that fired.

    Raises:
        InvalidTransitionError: the trigger does not exist from this state.
        GuardRejectedError: a guard refused it.
    """
    kind = _kind(trigger)
    state = str(facts.state)
    if trigger.value not in kind.machine.get_triggers(state):
        raise InvalidTransitionError(kind.name, state, trigger.value, _invalid_why(kind, state))
    shot: _Shot[Any] = _Shot(facts, evidence)
    with kind.lock:
        kind.machine.add_model(shot, initial=state)
        try:
            moved = shot.trigger(trigger.value, shot)  # type: ignore[attr-defined]
        finally:
            kind.machine.remove_model(shot)
    if not moved or shot.row is None:
        raise GuardRejectedError(kind.name, state, trigger.value, _why(facts, trigger, evidence))
    return shot.state, shot.row


def _invalid_why(kind: _Kind, state: str) -> str:
    if kind is _CASE and state in TERMINAL_CASE_STATES:
        return "the case has already ended"
    return ""


def _why(
    facts: CaseFacts | GpuFacts, trigger: CaseTrigger | GpuTrigger, evidence: Evidence | None
) -> str:
    if isinstance(facts, GpuFacts) and trigger is GpuTrigger.OPERATOR_RELEASE:
        return "needs operator_attested evidence with who (actor) and why (a non-empty reason)"
    if isinstance(facts, GpuFacts) and trigger in {GpuTrigger.RELEASE, GpuTrigger.RECOVER}:
        if evidence is None:
            return "no termination evidence given"
        if not evidence.proves_termination:
            return f"evidence {evidence.kind.value!r} does not prove the job is gone"
        if not evidence.label or not facts.job_label:
            return (
                f"evidence label {evidence.label!r} vs GPU job label {facts.job_label!r}: "
                "evidence without a label proves nothing"
            )
        return (
            f"evidence is about job label {evidence.label!r}, "
            f"but this GPU holds {facts.job_label!r}"
        )
    if isinstance(facts, GpuFacts) and trigger is GpuTrigger.ASSIGN:
        return "the GPU is marked to go offline" if facts.offline_requested else "no case given"
    return "a guard refused the transition"


def fire_case(
    facts: CaseFacts, trigger: CaseTrigger, evidence: Evidence | None = None
) -> CaseState:
    """Return the case's next state, or raise ``InvalidTransitionError``/``GuardRejectedError``."""
    case_trigger = typed(CaseTrigger, trigger, facts.state)
    assert case_trigger is not None
    return CaseState(fire(facts, case_trigger, evidence)[0])


def fire_gpu(facts: GpuFacts, trigger: GpuTrigger, evidence: Evidence | None = None) -> GpuState:
    """Return the GPU's next state, or raise ``InvalidTransitionError``/``GuardRejectedError``."""
    gpu_trigger = typed(GpuTrigger, trigger, facts.state)
    assert gpu_trigger is not None
    return GpuState(fire(facts, gpu_trigger, evidence)[0])
