"""What to do after a local error on one case: back off, or give the case up.

The engine's fault boundary (:mod:`mqi_communicator.engine.fault`) catches the error;
this pure rule decides. A case that keeps failing locally fails with the reason after
``Policy.max_local_failures`` consecutive errors ("consecutive": the count restarts
when the case moves forward, see ``_RESET_FAULTS`` in :mod:`.tables`). A case that still holds
a GPU (``submitting``/``running``) fails with the GPU quarantined, never freed: its
job may have started, and only evidence can free the slot (the zombie path).
"""

from __future__ import annotations

from .decide import Apply, Policy, Wait
from .guards import CaseFacts
from .states import CASE_STATES_HOLDING_GPU
from .triggers import CaseTrigger, GpuTrigger

__all__ = ["decide_local_failure"]


def decide_local_failure(case: CaseFacts, error: str, stage: str, policy: Policy) -> Apply | Wait:
    """The step after the ``case.local_failures + 1``-th consecutive local error."""
    failures = case.local_failures + 1
    if failures < policy.max_local_failures:
        return Wait(f"local error while {stage} ({failures} in a row): {error}")
    reason = f"local error while {stage}, {failures} times in a row: {error}"
    holds_gpu = case.state in CASE_STATES_HOLDING_GPU and case.gpu_name is not None
    quarantine = GpuTrigger.QUARANTINE if holds_gpu else None
    return Apply(CaseTrigger.FAIL, quarantine, None, reason, reason)
