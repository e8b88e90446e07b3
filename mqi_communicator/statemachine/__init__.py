"""Pure state machines for cases and GPU resources: states, tables, guards, evidence.

Nothing in this package does I/O.
"""

from .evidence import TERMINATION_KINDS, Evidence, EvidenceKind
from .guards import CaseFacts, GpuFacts, termination_proven
from .machines import fire_case, fire_gpu, legal_triggers
from .states import CASE_STATES_HOLDING_GPU, TERMINAL_CASE_STATES, CaseState, GpuState
from .step import PlannedStep, plan_step
from .tables import CASE_TRANSITIONS, GPU_TRANSITIONS, TransitionSpec

__all__ = [
    "CASE_STATES_HOLDING_GPU",
    "CASE_TRANSITIONS",
    "GPU_TRANSITIONS",
    "TERMINAL_CASE_STATES",
    "TERMINATION_KINDS",
    "CaseFacts",
    "CaseState",
    "Evidence",
    "EvidenceKind",
    "GpuFacts",
    "GpuState",
    "PlannedStep",
    "TransitionSpec",
    "fire_case",
    "fire_gpu",
    "legal_triggers",
    "plan_step",
    "termination_proven",
]
