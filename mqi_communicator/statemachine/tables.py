"""Every legal move of the case and GPU machines, declared as data in one place.

Read these two tables to know everything a case or a GPU can do. ``conditions`` and
``unless`` name guards from :mod:`.guards`; the machine refuses the move when a guard
says no. A trigger may appear twice with different destinations: the first whose
guards pass is taken (that is how ``release`` chooses ``available`` or ``offline``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .states import CaseState as C
from .states import GpuState as G

__all__ = ["CASE_TRANSITIONS", "GPU_TRANSITIONS", "TransitionSpec"]


@dataclass(frozen=True)
class TransitionSpec:
    """One row of a transition table."""

    trigger: str
    source: tuple[str, ...]
    dest: str
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    doc: str = ""


_HOLDING = (C.SUBMITTING.value, C.RUNNING.value)
_LIVE = (C.SUBMITTED.value, C.SUBMITTING.value, C.RUNNING.value, C.RETRIEVING.value)

CASE_TRANSITIONS: tuple[TransitionSpec, ...] = (
    TransitionSpec(
        "claim",
        (C.SUBMITTED,),
        C.SUBMITTING,
        ("has_label",),
        doc="a GPU was locked and the job label decided",
    ),
    TransitionSpec(
        "confirm_submitted", (C.SUBMITTING,), C.RUNNING, doc="the scheduler knows the job"
    ),
    TransitionSpec(
        "requeue", _HOLDING, C.SUBMITTED, doc="transient failure; try again with a new attempt"
    ),
    TransitionSpec(
        "job_succeeded", (C.RUNNING,), C.RETRIEVING, doc="the job ended with exit code 0"
    ),
    TransitionSpec(
        "retrieved",
        (C.RETRIEVING,),
        C.COMPLETED,
        doc="results downloaded, verified and moved into place",
    ),
    TransitionSpec("fail", _LIVE, C.FAILED, doc="the case cannot complete; reason recorded"),
    TransitionSpec("cancel", _LIVE, C.CANCELLED, doc="an operator cancelled the case"),
    TransitionSpec(
        "retry", (C.FAILED, C.CANCELLED), C.SUBMITTED, doc="an operator asked for another attempt"
    ),
    TransitionSpec(
        "retry_retrieval",
        (C.FAILED,),
        C.RETRIEVING,
        doc="an operator retried a case whose retrieval failed; its results are still there",
    ),
)

GPU_TRANSITIONS: tuple[TransitionSpec, ...] = (
    TransitionSpec(
        "assign",
        (G.AVAILABLE,),
        G.ASSIGNED,
        ("has_case",),
        ("offline_requested",),
        doc="locked for one case",
    ),
    TransitionSpec(
        "release",
        (G.ASSIGNED,),
        G.AVAILABLE,
        ("termination_proven",),
        ("offline_requested",),
        doc="the job is provably gone",
    ),
    TransitionSpec(
        "release",
        (G.ASSIGNED,),
        G.OFFLINE,
        ("termination_proven", "offline_requested"),
        doc="the job is provably gone and an operator wants the GPU out",
    ),
    TransitionSpec(
        "quarantine",
        (G.ASSIGNED,),
        G.ZOMBIE,
        doc="the job may still run (kill unconfirmed, host unreachable)",
    ),
    TransitionSpec(
        "recover",
        (G.ZOMBIE,),
        G.AVAILABLE,
        ("termination_proven",),
        ("offline_requested",),
        doc="the stray job is provably gone",
    ),
    TransitionSpec(
        "recover",
        (G.ZOMBIE,),
        G.OFFLINE,
        ("termination_proven", "offline_requested"),
        doc="the stray job is provably gone; the GPU stays out of the pool",
    ),
    TransitionSpec(
        "operator_release",
        (G.ZOMBIE,),
        G.AVAILABLE,
        ("operator_attested",),
        ("offline_requested",),
        doc="an operator attested (who, why) that the stray job is gone",
    ),
    TransitionSpec(
        "operator_release",
        (G.ZOMBIE,),
        G.OFFLINE,
        ("operator_attested", "offline_requested"),
        doc="an operator attested that the stray job is gone; the GPU stays out",
    ),
    TransitionSpec("take_offline", (G.AVAILABLE,), G.OFFLINE, doc="operator: out of the pool"),
    TransitionSpec("bring_online", (G.OFFLINE,), G.AVAILABLE, doc="operator: back in the pool"),
)
