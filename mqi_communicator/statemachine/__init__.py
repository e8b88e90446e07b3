"""Pure state machines for cases and GPU resources: states, triggers, tables, guards, evidence.

Nothing in this package does I/O.
"""

from .effects import StepInputs
from .evidence import TERMINATION_KINDS, Evidence, EvidenceKind
from .guards import CaseFacts, GpuFacts, termination_proven
from .machines import fire_case, fire_gpu, legal_triggers, may_fire, sources_of
from .states import CASE_STATES_HOLDING_GPU, TERMINAL_CASE_STATES, CaseState, GpuState
from .step import PlannedStep, plan_step
from .tables import CANCEL_REASON, CASE_TRANSITIONS, GPU_TRANSITIONS, TransitionSpec
from .triggers import CaseTrigger, GpuTrigger, KillReason

__all__ = [
    "CANCEL_REASON",
    "CASE_STATES_HOLDING_GPU",
    "CASE_TRANSITIONS",
    "GPU_TRANSITIONS",
    "TERMINAL_CASE_STATES",
    "TERMINATION_KINDS",
    "CaseFacts",
    "CaseState",
    "CaseTrigger",
    "Evidence",
    "EvidenceKind",
    "GpuFacts",
    "GpuState",
    "GpuTrigger",
    "KillReason",
    "PlannedStep",
    "StepInputs",
    "TransitionSpec",
    "fire_case",
    "fire_gpu",
    "legal_triggers",
    "may_fire",
    "plan_step",
    "sources_of",
    "termination_proven",
]
