"""Every rule of the case and GPU machines, declared as data in one place.

Read these two tables to know everything a case or a GPU can do: for each trigger its
sources, its destination, its guards, and its effects on the row's other fields.
``conditions`` and ``unless`` name guards from :mod:`.guards`; the machine refuses the
move when a guard says no. A trigger may appear more than once from the same source with
different destinations: the first row whose guards pass is taken (that is how
``release`` chooses ``available`` or ``offline``). ``dest`` :data:`SAME` keeps the state
and only sets fields (a flag such as ``cancel_requested``).

``effects`` are ``(field, value)`` pairs in the vocabulary of :mod:`.effects`;
``holder_effects`` (case rows only) are set on the GPU that holds the case, which makes
no move of its own. The store applies them without knowing the trigger.

:data:`CASE_FLAGS` and :data:`GPU_FLAGS` name the fields that steer decisions; the
diagram shows them beside their states and on the edges that change them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .effects import NOW, Effects, Given, Plus
from .states import CaseState as C
from .states import GpuState as G
from .triggers import CaseTrigger as CT
from .triggers import GpuTrigger as GT

__all__ = [
    "CANCEL_REASON",
    "CASE_FLAGS",
    "CASE_TRANSITIONS",
    "GPU_FLAGS",
    "GPU_TRANSITIONS",
    "SAME",
    "FlagSpec",
    "TransitionSpec",
]

#: ``dest`` of a row that keeps the state (``transitions``' reflexive ``"="``).
SAME = "="

#: The failure reason recorded when a case is cancelled without one given.
CANCEL_REASON = "cancelled by operator"


@dataclass(frozen=True)
class TransitionSpec:
    """One row of a transition table."""

    trigger: CT | GT
    source: tuple[str, ...]
    dest: str
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    doc: str = ""
    effects: Effects = ()
    holder_effects: Effects = ()


@dataclass(frozen=True)
class FlagSpec:
    """A field that steers decisions: the states where it matters and what it means."""

    field: str
    states: tuple[str, ...]
    doc: str


_HOLDING = (C.SUBMITTING.value, C.RUNNING.value)
_LIVE = (C.SUBMITTED.value, C.SUBMITTING.value, C.RUNNING.value, C.RETRIEVING.value)

#: A new attempt starts from nothing: the last one's job, directory and flags are gone.
_RESET_JOB: Effects = (
    ("attempt", Plus(1)),
    ("label", None),
    ("job_id", None),
    ("remote_dir", None),
    ("host", None),
    ("gpu_name", None),
    ("started_at", None),
    ("kill_requested_at", None),
    ("kill_reason", None),
    ("cancel_requested", False),
    ("attempt_token", None),
    # A retried legacy case runs as our own job: it must not stay "legacy".
    ("job_origin", None),
)

#: An operator's retry, or a step forward, starts the fault bookkeeping afresh
#: (``engine/fault.py`` counts consecutive local errors).
_RESET_FAULTS: Effects = (
    ("transient_failures", 0),
    ("local_failures", 0),
    ("storage_waits", 0),
    ("last_error", None),
    ("next_attempt_at", None),
)

#: The case ended; the step releases (or quarantines) its GPU, so it holds none.
_ENDED: Effects = (("completed_at", NOW), ("gpu_name", None))

CASE_TRANSITIONS: tuple[TransitionSpec, ...] = (
    TransitionSpec(
        CT.CLAIM,
        (C.SUBMITTED,),
        C.SUBMITTING,
        ("has_label",),
        doc="a GPU was locked and the job label decided",
        effects=(
            ("label", Given("label")),
            ("remote_dir", Given("remote_dir")),
            ("host", Given("host")),
            ("gpu_name", Given("gpu_name")),
            ("attempt_token", Given("token")),
        ),
    ),
    TransitionSpec(
        CT.CONFIRM_SUBMITTED,
        (C.SUBMITTING,),
        C.RUNNING,
        doc="the scheduler knows the job",
        # Forward progress: earlier local errors no longer count as consecutive.
        effects=(("job_id", Given("job_id", keep=True)), ("local_failures", 0)),
        holder_effects=(("job_id", Given("job_id", keep=True)),),
    ),
    TransitionSpec(
        CT.REQUEUE,
        _HOLDING,
        C.SUBMITTED,
        doc="transient failure; try again with a new attempt (after retry_at, if given)",
        effects=(
            *_RESET_JOB,
            ("failure_reason", Given("failure_reason", keep=True)),
            ("next_attempt_at", Given("retry_at", keep=True)),
        ),
    ),
    TransitionSpec(
        CT.REQUEST_KILL,
        (C.RUNNING,),
        SAME,
        doc="the engine asks the scheduler to kill the job (intent recorded first)",
        effects=(("kill_requested_at", NOW), ("kill_reason", Given("kill_reason"))),
    ),
    TransitionSpec(
        CT.JOB_SUCCEEDED,
        (C.RUNNING,),
        C.RETRIEVING,
        doc="the job ended with exit code 0",
        effects=(("gpu_name", None), *_RESET_FAULTS),
    ),
    TransitionSpec(
        CT.RETRIEVED,
        (C.RETRIEVING,),
        C.COMPLETED,
        doc="results downloaded, verified and moved into place",
        # What held it back is in the audit trail; a completed case shows no error.
        effects=(("progress", 100), ("completed_at", NOW), *_RESET_FAULTS),
    ),
    TransitionSpec(
        CT.FAIL,
        _LIVE,
        C.FAILED,
        doc="the case cannot complete; reason recorded",
        effects=(*_ENDED, ("failure_reason", Given("failure_reason", keep=True))),
    ),
    # An operator's cancel (``operations.cancel_case``) offers ``cancel`` first, then
    # ``request_cancel``: a case whose job may run is only flagged, and the engine kills
    # the job and fires ``cancel`` itself, with the GPU's release or quarantine.
    TransitionSpec(
        CT.CANCEL,
        (C.SUBMITTED, C.RETRIEVING),
        C.CANCELLED,
        doc="cancelled at once: no job of ours runs",
        effects=(*_ENDED, ("failure_reason", Given("failure_reason", CANCEL_REASON))),
    ),
    TransitionSpec(
        CT.CANCEL,
        _HOLDING,
        C.CANCELLED,
        unless=("by_operator",),
        doc="the engine ends a cancelled case with its job confirmed gone (or quarantined)",
        effects=(*_ENDED, ("failure_reason", Given("failure_reason", CANCEL_REASON))),
    ),
    TransitionSpec(
        CT.REQUEST_CANCEL,
        _HOLDING,
        SAME,
        doc="an operator asked to cancel; the engine kills the job first",
        effects=(("cancel_requested", True),),
    ),
    TransitionSpec(
        CT.RETRY,
        (C.FAILED, C.CANCELLED),
        C.SUBMITTED,
        doc="an operator asked for another attempt",
        effects=(
            *_RESET_JOB,
            ("failure_reason", None),
            ("completed_at", None),
            ("progress", 0),
            *_RESET_FAULTS,
        ),
    ),
    TransitionSpec(
        CT.RETRY_RETRIEVAL,
        (C.FAILED,),
        C.RETRIEVING,
        doc="an operator retried a case whose retrieval failed; its results are still there",
        # Same attempt, label and remote directory: only its download is tried again.
        effects=(*_RESET_FAULTS, ("failure_reason", None), ("completed_at", None)),
    ),
)

#: A GPU that changes state starts its fault bookkeeping afresh (``engine/fault.py``
#: counts consecutive local errors of a zombie's checks).
_RESET_GPU_FAULTS: Effects = (
    ("local_failures", 0),
    ("last_error", None),
    ("next_attempt_at", None),
)

#: The GPU no longer holds any job of ours.
_FREE: Effects = (
    ("assigned_case_id", None),
    ("job_label", None),
    ("job_id", None),
    ("job_dir", None),
    ("job_token", None),
    ("job_origin", None),
    ("quarantined_case_id", None),
    ("kill_requested_at", None),
    ("next_check_at", None),
    *_RESET_GPU_FAULTS,
)
_ASSIGNED: Effects = (
    ("assigned_case_id", Given("case_id")),
    ("job_label", Given("label")),
    ("job_dir", Given("remote_dir")),
    ("job_token", Given("token")),
    ("job_id", None),
    ("kill_requested_at", None),
    ("next_check_at", None),
)
_OFFLINE_ON: Effects = (("offline_requested", True),)
_OFFLINE_OFF: Effects = (("offline_requested", False),)

GPU_TRANSITIONS: tuple[TransitionSpec, ...] = (
    TransitionSpec(
        GT.ASSIGN,
        (G.AVAILABLE,),
        G.ASSIGNED,
        ("has_case",),
        ("offline_requested",),
        doc="locked for one case",
        effects=_ASSIGNED,
    ),
    TransitionSpec(
        GT.RELEASE,
        (G.ASSIGNED,),
        G.AVAILABLE,
        ("termination_proven",),
        ("offline_requested",),
        doc="the job is provably gone",
        effects=_FREE,
    ),
    TransitionSpec(
        GT.RELEASE,
        (G.ASSIGNED,),
        G.OFFLINE,
        ("termination_proven", "offline_requested"),
        doc="the job is provably gone and an operator wants the GPU out",
        effects=_FREE,
    ),
    # The case moves on (it may be retried elsewhere); the job we placed, and the case
    # it belongs to, stay on record until the job is proven gone.
    TransitionSpec(
        GT.QUARANTINE,
        (G.ASSIGNED,),
        G.ZOMBIE,
        doc="the job may still run (kill unconfirmed, host unreachable)",
        effects=(
            ("assigned_case_id", None),
            ("quarantined_case_id", Given("case_id")),
            *_RESET_GPU_FAULTS,
        ),
    ),
    TransitionSpec(
        GT.RECOVER,
        (G.ZOMBIE,),
        G.AVAILABLE,
        ("termination_proven",),
        ("offline_requested",),
        doc="the stray job is provably gone",
        effects=_FREE,
    ),
    TransitionSpec(
        GT.RECOVER,
        (G.ZOMBIE,),
        G.OFFLINE,
        ("termination_proven", "offline_requested"),
        doc="the stray job is provably gone; the GPU stays out of the pool",
        effects=_FREE,
    ),
    TransitionSpec(
        GT.OPERATOR_RELEASE,
        (G.ZOMBIE,),
        G.AVAILABLE,
        ("operator_attested",),
        ("offline_requested",),
        doc="an operator attested (who, why) that the stray job is gone",
        effects=_FREE,
    ),
    TransitionSpec(
        GT.OPERATOR_RELEASE,
        (G.ZOMBIE,),
        G.OFFLINE,
        ("operator_attested", "offline_requested"),
        doc="an operator attested that the stray job is gone; the GPU stays out",
        effects=_FREE,
    ),
    TransitionSpec(
        GT.TAKE_OFFLINE,
        (G.AVAILABLE,),
        G.OFFLINE,
        doc="operator: out of the pool",
        effects=_OFFLINE_ON,
    ),
    TransitionSpec(
        GT.TAKE_OFFLINE,
        (G.ASSIGNED, G.ZOMBIE, G.OFFLINE),
        SAME,
        doc="operator: out of the pool once its job is provably gone (drains)",
        effects=_OFFLINE_ON,
    ),
    TransitionSpec(
        GT.BRING_ONLINE,
        (G.OFFLINE,),
        G.AVAILABLE,
        doc="operator: back in the pool",
        effects=_OFFLINE_OFF,
    ),
    TransitionSpec(
        GT.BRING_ONLINE,
        (G.AVAILABLE, G.ASSIGNED, G.ZOMBIE),
        SAME,
        doc="operator: withdraw a pending offline",
        effects=_OFFLINE_OFF,
    ),
)

CASE_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(
        "job_id",
        (C.SUBMITTING,),
        "unset with no live lease: the submit outcome is unknown; the job is looked "
        "up by its label",
    ),
    FlagSpec(
        "cancel_requested",
        _HOLDING,
        "an operator asked to cancel: the engine kills the job, then cancels",
    ),
    FlagSpec(
        "kill_requested_at",
        (C.RUNNING,),
        "a kill was sent then: only a later observation confirms it; after the "
        "window the GPU is quarantined",
    ),
)

GPU_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(
        "offline_requested",
        (G.ASSIGNED, G.ZOMBIE),
        "leaves the pool (offline) once its job is provably gone",
    ),
)
