"""The case and GPU machines, built with ``transitions`` from the tables in :mod:`.tables`.

The machines are pure: :func:`fire_case` and :func:`fire_gpu` take a snapshot and
return the next state, or raise. Nothing here does I/O, so a failing callback can
never leave a half-applied change (``transitions`` does not roll back callbacks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from transitions import Machine

from ..errors import GuardRejectedError, InvalidTransitionError
from .evidence import Evidence
from .guards import CASE_GUARDS, GPU_GUARDS, CaseFacts, GpuFacts
from .states import CaseState, GpuState
from .tables import CASE_TRANSITIONS, GPU_TRANSITIONS, TransitionSpec

__all__ = ["fire_case", "fire_gpu", "legal_triggers"]

F = TypeVar("F", CaseFacts, GpuFacts)


class _Model(Generic[F]):
    """The throwaway object ``transitions`` drives; ``state`` is its model attribute."""

    def __init__(self, facts: F, evidence: Evidence | None) -> None:
        self.state: str = facts.state
        self.facts: F = facts
        self.evidence = evidence


def _build(
    model: _Model[Any],
    specs: Sequence[TransitionSpec],
    states: Sequence[str],
    guards: Mapping[str, Callable[[Any, Evidence | None], bool]],
) -> Machine:
    # Guards are pure functions of (facts, evidence); bind them to this model so
    # ``transitions`` can call them without event data.
    def bind(name: str) -> Callable[[], bool]:
        guard = guards[name]
        return lambda: guard(model.facts, model.evidence)

    rows = [
        {
            "trigger": s.trigger,
            "source": [str(x) for x in s.source],
            "dest": str(s.dest),
            "conditions": [bind(n) for n in s.conditions],
            "unless": [bind(n) for n in s.unless],
        }
        for s in specs
    ]
    return Machine(
        model=model,
        states=list(states),
        transitions=rows,
        initial=model.state,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        model_attribute="state",
    )


def legal_triggers(kind: str, state: str) -> list[str]:
    """The triggers that exist from ``state`` (guards not evaluated). ``kind``: case|gpu."""
    specs = CASE_TRANSITIONS if kind == "case" else GPU_TRANSITIONS
    seen: dict[str, None] = {}
    for s in specs:
        if state in s.source:
            seen[s.trigger] = None
    return list(seen)


def _fire(
    kind: str,
    facts: F,
    trigger: str,
    evidence: Evidence | None,
    specs: Sequence[TransitionSpec],
    states: Sequence[str],
    guards: Mapping[str, Callable[[Any, Evidence | None], bool]],
) -> str:
    if trigger not in legal_triggers(kind, facts.state):
        raise InvalidTransitionError(kind, facts.state, trigger)
    model: _Model[F] = _Model(facts, evidence)
    _build(model, specs, states, guards)
    moved = getattr(model, "trigger")(trigger)  # noqa: B009 - added by transitions
    if not moved:
        raise GuardRejectedError(kind, facts.state, trigger, _why(facts, trigger, evidence))
    return model.state


def _why(facts: CaseFacts | GpuFacts, trigger: str, evidence: Evidence | None) -> str:
    if isinstance(facts, GpuFacts) and trigger == "operator_release":
        return "needs operator_attested evidence with who (actor) and why (a non-empty reason)"
    if isinstance(facts, GpuFacts) and trigger in {"release", "recover"}:
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
    if isinstance(facts, GpuFacts) and trigger == "assign":
        return "the GPU is marked to go offline" if facts.offline_requested else "no case given"
    return "a guard refused the transition"


def fire_case(facts: CaseFacts, trigger: str, evidence: Evidence | None = None) -> CaseState:
    """Return the case's next state, or raise ``InvalidTransitionError``/``GuardRejectedError``."""
    return CaseState(
        _fire(
            "case",
            facts,
            trigger,
            evidence,
            CASE_TRANSITIONS,
            [s.value for s in CaseState],
            CASE_GUARDS,
        )
    )


def fire_gpu(facts: GpuFacts, trigger: str, evidence: Evidence | None = None) -> GpuState:
    """Return the GPU's next state, or raise ``InvalidTransitionError``/``GuardRejectedError``."""
    return GpuState(
        _fire(
            "gpu",
            facts,
            trigger,
            evidence,
            GPU_TRANSITIONS,
            [s.value for s in GpuState],
            GPU_GUARDS,
        )
    )
