"""Evidence: the facts that allow a GPU to be handed out again.

A GPU goes back to ``available`` (from ``assigned`` or ``zombie``) only with *termination
evidence* about the job we placed on it, carrying that job's label:

* ``OBSERVED_TERMINAL`` -- a poll saw the job, with our label, in a terminal state
  (and, where the adapter can tell, its process group gone);
* ``CONFIRMED_ABSENT`` -- the scheduler answered and neither the job nor its processes exist;
* ``KILL_CONFIRMED`` -- an observation made *after* the kill request shows the job gone;
* ``NEVER_SUBMITTED`` -- the job provably never reached the scheduler.

A label is part of every such fact: evidence without one (``None`` or ``""``) proves
nothing, whatever its kind (:func:`~mqi_communicator.statemachine.guards.termination_proven`).

``OPERATOR_ATTESTED`` is not termination evidence either: it is an operator's word that a
zombie's job is gone (``gpus release --confirm-job-gone --reason``), accepted only by the
GPU trigger ``operator_release`` and recorded with who (``actor``) and why (``detail``).

"The kill command returned 0" is ``KILL_REQUESTED``, which is not termination evidence:
Pueue and Slurm kill asynchronously.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["TERMINATION_KINDS", "Evidence", "EvidenceKind"]


class EvidenceKind(StrEnum):
    """What kind of fact an :class:`Evidence` records."""

    OBSERVED_TERMINAL = "observed_terminal"
    CONFIRMED_ABSENT = "confirmed_absent"
    KILL_CONFIRMED = "kill_confirmed"
    NEVER_SUBMITTED = "never_submitted"
    # Below: recorded for the audit trail, never enough to free a GPU.
    SUBMIT_ACCEPTED = "submit_accepted"
    KILL_REQUESTED = "kill_requested"
    UNREACHABLE = "unreachable"
    KILL_UNCONFIRMED = "kill_unconfirmed"
    OPERATOR = "operator"
    #: An operator's word that a zombie's job is gone; frees only through ``operator_release``.
    OPERATOR_ATTESTED = "operator_attested"
    RESULTS_VERIFIED = "results_verified"
    INTAKE = "intake"


TERMINATION_KINDS = frozenset(
    {
        EvidenceKind.OBSERVED_TERMINAL,
        EvidenceKind.CONFIRMED_ABSENT,
        EvidenceKind.KILL_CONFIRMED,
        EvidenceKind.NEVER_SUBMITTED,
    }
)


@dataclass(frozen=True)
class Evidence:
    """One observed fact about one job, with the moment it was observed.

    Attributes:
        kind: What was observed.
        label: The job label the fact is about (our label, or ``mqic_case_<id>`` for a job
            adopted from the original system; never a scheduler id alone: ids are reused).
            Evidence without a label never frees a GPU.
        observed_at: When the observation was made (UTC).
        job_id: The scheduler's id, when known.
        requested_at: For ``KILL_CONFIRMED``: when the kill was requested. The
            observation must come after it.
        detail: Free text for humans (exit code, scheduler state, ...); for
            ``OPERATOR_ATTESTED``, the operator's reason.
        actor: Who attested (``user@host``); only for ``OPERATOR_ATTESTED``.
    """

    kind: EvidenceKind
    label: str | None
    observed_at: datetime
    job_id: str | None = None
    requested_at: datetime | None = None
    detail: str = ""
    actor: str | None = None

    @property
    def proves_termination(self) -> bool:
        """True when this kind of fact, on its own terms, shows the job is gone."""
        if self.kind not in TERMINATION_KINDS:
            return False
        if self.kind is EvidenceKind.KILL_CONFIRMED:
            return self.requested_at is not None and self.observed_at > self.requested_at
        return True

    def to_json(self) -> str:
        """Serialise for the audit table."""
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "label": self.label,
            "observed_at": self.observed_at.isoformat(),
            "job_id": self.job_id,
            "requested_at": self.requested_at.isoformat() if self.requested_at else None,
            "detail": self.detail,
        }
        if self.actor is not None:  # absent otherwise: older audit rows stay byte-identical
            data["actor"] = self.actor
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Evidence:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        req = data.get("requested_at")
        return cls(
            kind=EvidenceKind(data["kind"]),
            label=data.get("label"),
            observed_at=datetime.fromisoformat(data["observed_at"]),
            job_id=data.get("job_id"),
            requested_at=datetime.fromisoformat(req) if req else None,
            detail=data.get("detail", ""),
            actor=data.get("actor"),
        )
