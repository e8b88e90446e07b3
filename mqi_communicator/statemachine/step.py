"""A *step*: one case transition, the matching GPU transition, their evidence and effects.

The store applies a step in one database transaction, writing exactly what
:func:`plan_step` returns: the new states and every field the fired table rows set. It
never needs to know which trigger fired. :func:`plan_step` also checks that the two
halves belong together:

* a case enters ``submitting`` only together with a GPU ``assign`` to that case;
* a case leaves ``submitting``/``running`` for a state that holds no GPU only together
  with its GPU's ``release`` (needs termination evidence) or ``quarantine``;
* GPU ``assign``/``release``/``quarantine`` never happen without their case;
* ``recover``, ``operator_release``, ``take_offline`` and ``bring_online`` involve no case.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import InvalidTransitionError
from .effects import StepInputs, resolve
from .evidence import Evidence
from .guards import CaseFacts, GpuFacts
from .machines import fire
from .states import CASE_STATES_HOLDING_GPU, CaseState, GpuState
from .triggers import CaseTrigger, GpuTrigger, typed

__all__ = ["CASE_BOUND_GPU_TRIGGERS", "PlannedStep", "plan_step"]

#: GPU triggers that only ever happen together with a transition of the case they hold.
CASE_BOUND_GPU_TRIGGERS = frozenset({GpuTrigger.ASSIGN, GpuTrigger.RELEASE, GpuTrigger.QUARANTINE})
_GPU_FREEING = frozenset({GpuTrigger.RELEASE, GpuTrigger.QUARANTINE})


@dataclass(frozen=True)
class PlannedStep:
    """The validated outcome of a step: old and new states of both halves, and the fields.

    ``case_fields``/``gpu_fields`` are set on the moved rows; ``holder_fields`` on the GPU
    that holds the case when that GPU makes no move of its own.
    """

    case_from: CaseState | None
    case_to: CaseState | None
    gpu_from: GpuState | None
    gpu_to: GpuState | None
    case_fields: dict[str, object] = field(default_factory=dict)
    gpu_fields: dict[str, object] = field(default_factory=dict)
    holder_fields: dict[str, object] = field(default_factory=dict)


def _refuse(state: str, trigger: str, why: str) -> InvalidTransitionError:
    return InvalidTransitionError("step", state, trigger, why)


def plan_step(
    case: CaseFacts | None,
    case_trigger: CaseTrigger | None,
    gpu: GpuFacts | None,
    gpu_trigger: GpuTrigger | None,
    evidence: Evidence | None = None,
    given: StepInputs | None = None,
) -> PlannedStep:
    """Validate a step and return the resulting states and field values, or raise.

    Args:
        case: The case snapshot (None for a GPU-only step).
        case_trigger: The case trigger, or None.
        gpu: The GPU snapshot. For ``assign`` it is judged as holding ``case``.
        gpu_trigger: The GPU trigger, or None.
        evidence: The evidence the guards will judge.
        given: The step's inputs for the rows' effects (None: no fields are planned).

    Raises:
        InvalidTransitionError: the trigger is illegal, or the halves do not match.
        GuardRejectedError: a guard refused (for example: no termination evidence).
    """
    case_trigger = typed(CaseTrigger, case_trigger, case.state if case else "-")
    gpu_trigger = typed(GpuTrigger, gpu_trigger, gpu.state if gpu else "-")
    if case_trigger is None and gpu_trigger is None:
        raise _refuse("-", "-", "a step needs a case trigger, a GPU trigger, or both")
    if (case_trigger is None) != (case is None):
        raise _refuse("-", str(case_trigger), "case trigger and case snapshot go together")
    if (gpu_trigger is None) != (gpu is None):
        raise _refuse("-", str(gpu_trigger), "GPU trigger and GPU snapshot go together")
    if gpu is not None and case is not None and gpu_trigger is GpuTrigger.ASSIGN:
        gpu = replace(gpu, case_id=case.case_id)  # the GPU is being given this case

    case_row = fire(case, case_trigger, evidence) if case and case_trigger else None
    gpu_row = fire(gpu, gpu_trigger, evidence) if gpu and gpu_trigger else None
    case_from = CaseState(case.state) if case else None
    gpu_from = GpuState(gpu.state) if gpu else None
    case_to = CaseState(case_row[0]) if case_row else None
    gpu_to = GpuState(gpu_row[0]) if gpu_row else None

    if gpu_trigger in CASE_BOUND_GPU_TRIGGERS:
        assert gpu is not None
        if case is None:
            raise _refuse(gpu.state, gpu_trigger, "this GPU trigger needs its case's transition")
        if gpu.case_id != case.case_id:
            raise _refuse(
                gpu.state,
                gpu_trigger,
                f"GPU {gpu.name} holds case {gpu.case_id}, not {case.case_id}",
            )
    elif gpu_trigger is not None and case is not None:
        raise _refuse(str(gpu_from), gpu_trigger, "this GPU trigger involves no case")

    if case is not None and case_to is not None:
        holds_before = case_from in CASE_STATES_HOLDING_GPU
        holds_after = case_to in CASE_STATES_HOLDING_GPU
        if not holds_before and holds_after and gpu_trigger is not GpuTrigger.ASSIGN:
            raise _refuse(case.state, str(case_trigger), "entering this state needs a GPU assign")
        if holds_before and not holds_after and gpu_trigger not in _GPU_FREEING:
            raise _refuse(
                case.state,
                str(case_trigger),
                "leaving this state needs its GPU released or quarantined",
            )
        if holds_before == holds_after and gpu_trigger is not None:
            raise _refuse(case.state, str(case_trigger), "this case move keeps its GPU as it is")

    if given is None:
        return PlannedStep(case_from, case_to, gpu_from, gpu_to)
    return PlannedStep(
        case_from,
        case_to,
        gpu_from,
        gpu_to,
        case_fields=resolve(case_row[1].effects, case, given) if case_row else {},
        gpu_fields=resolve(gpu_row[1].effects, gpu, given) if gpu_row else {},
        holder_fields=resolve(case_row[1].holder_effects, case, given) if case_row else {},
    )
