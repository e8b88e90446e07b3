"""A *step*: one case transition, the matching GPU transition, and their evidence.

The store applies a step in one database transaction. :func:`plan_step` is the pure
check that the two halves belong together:

* a case enters ``submitting`` only together with a GPU ``assign`` to that case;
* a case leaves ``submitting``/``running`` for a state that holds no GPU only together
  with its GPU's ``release`` (needs termination evidence) or ``quarantine``;
* GPU ``assign``/``release``/``quarantine`` never happen without their case;
* ``recover``, ``operator_release``, ``take_offline`` and ``bring_online`` involve no case.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidTransitionError
from .evidence import Evidence
from .guards import CaseFacts, GpuFacts
from .machines import fire_case, fire_gpu
from .states import CASE_STATES_HOLDING_GPU, CaseState, GpuState

__all__ = ["CASE_BOUND_GPU_TRIGGERS", "PlannedStep", "plan_step"]

#: GPU triggers that only ever happen together with a transition of the case they hold.
CASE_BOUND_GPU_TRIGGERS = frozenset({"assign", "release", "quarantine"})


@dataclass(frozen=True)
class PlannedStep:
    """The validated outcome of a step: old and new states of both halves."""

    case_from: CaseState | None
    case_to: CaseState | None
    gpu_from: GpuState | None
    gpu_to: GpuState | None


def _refuse(state: str, trigger: str, why: str) -> InvalidTransitionError:
    return InvalidTransitionError("step", state, trigger, why)


def plan_step(
    case: CaseFacts | None,
    case_trigger: str | None,
    gpu: GpuFacts | None,
    gpu_trigger: str | None,
    evidence: Evidence | None = None,
) -> PlannedStep:
    """Validate a step and return the resulting states, or raise.

    Args:
        case: The case snapshot (None for a GPU-only step).
        case_trigger: The case trigger, or None.
        gpu: The GPU snapshot. For ``assign`` its ``case_id`` must already name ``case``.
        gpu_trigger: The GPU trigger, or None.
        evidence: The evidence the GPU guards will judge.

    Raises:
        InvalidTransitionError: the trigger is illegal, or the halves do not match.
        GuardRejectedError: a guard refused (for example: no termination evidence).
    """
    if case_trigger is None and gpu_trigger is None:
        raise _refuse("-", "-", "a step needs a case trigger, a GPU trigger, or both")
    if (case_trigger is None) != (case is None):
        raise _refuse("-", str(case_trigger), "case trigger and case snapshot go together")
    if (gpu_trigger is None) != (gpu is None):
        raise _refuse("-", str(gpu_trigger), "GPU trigger and GPU snapshot go together")

    case_to = fire_case(case, case_trigger, evidence) if case and case_trigger else None
    gpu_to = fire_gpu(gpu, gpu_trigger, evidence) if gpu and gpu_trigger else None
    case_from = CaseState(case.state) if case else None
    gpu_from = GpuState(gpu.state) if gpu else None

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
        if not holds_before and holds_after and gpu_trigger != "assign":
            raise _refuse(case.state, str(case_trigger), "entering this state needs a GPU assign")
        if holds_before and not holds_after and gpu_trigger not in {"release", "quarantine"}:
            raise _refuse(
                case.state,
                str(case_trigger),
                "leaving this state needs its GPU released or quarantined",
            )
        if holds_before == holds_after and gpu_trigger is not None:
            raise _refuse(case.state, str(case_trigger), "this case move keeps its GPU as it is")

    return PlannedStep(case_from, case_to, gpu_from, gpu_to)
