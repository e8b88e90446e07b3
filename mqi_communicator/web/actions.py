"""The operator actions of the web console, as data: what each does and when it is offered.

Every action calls the library (:class:`~mqi_communicator.service.Communicator`), the
same calls as the CLI's ``cases retry|cancel``, ``gpus offline|online|release``; none
writes a state itself, so the state machine stays the only writer of states and every
change leaves its audit row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..persistence import CaseRecord, GpuRecord
from ..service import Communicator
from ..statemachine import TERMINAL_CASE_STATES, CaseState, GpuState

__all__ = ["ACTIONS", "Action", "ActionInput", "Target", "offered"]

Target = Literal["case", "gpu"]


@dataclass(frozen=True)
class ActionInput:
    """What the confirmation form carries besides the CSRF token, and who sent it.

    Attributes:
        actor: Who acts, as the audit trail names them (``web:<client address>``).
        reason: The operator's reason (attested actions only).
        job_gone: The operator ticked "the job is gone" (attested actions only).
    """

    actor: str
    reason: str = ""
    job_gone: bool = False


@dataclass(frozen=True)
class Action:
    """One operator action.

    Attributes:
        target: What it acts on.
        name: The URL segment (``/act/<target>/<name>/<id>``).
        label: The button text.
        explain: What will happen, shown on the confirmation page.
        applies: Whether the button is offered for a record in its current state.
        run: Performs it through the library; returns the result sentence.
        attested: The operator's word is the evidence: the confirmation page lists what
            to check first and asks for a reason and an explicit "the job is gone".
    """

    target: Target
    name: str
    label: str
    explain: str
    applies: Callable[[CaseRecord | GpuRecord], bool]
    run: Callable[[Communicator, str, ActionInput], str]
    attested: bool = False


def _retry(comm: Communicator, key: str, _form: ActionInput) -> str:
    case = comm.retry(int(key))
    return f"case {case.id} ({case.name}) is {case.status.value} again, attempt {case.attempt}"


def _cancel(comm: Communicator, key: str, _form: ActionInput) -> str:
    case = comm.cancel(int(key))
    if case.status in TERMINAL_CASE_STATES:
        return f"case {case.id} ({case.name}) is {case.status.value}"
    return (
        f"case {case.id} ({case.name}): cancel requested while {case.status.value}; the "
        "engine kills its job and cancels the case once the job is provably gone"
    )


def _gpu_offline(offline: bool) -> Callable[[Communicator, str, ActionInput], str]:
    def run(comm: Communicator, key: str, _form: ActionInput) -> str:
        gpu = comm.set_gpu_offline(key, offline)
        if offline and gpu.status is not GpuState.OFFLINE:
            return (
                f"gpu {gpu.name}: offline requested; it is {gpu.status.value} and goes "
                "offline once its job is provably gone"
            )
        return f"gpu {gpu.name} is {gpu.status.value}"

    return run


def _release(comm: Communicator, key: str, form: ActionInput) -> str:
    try:
        gpu = comm.release_zombie(
            key, reason=form.reason, confirm_job_gone=form.job_gone, actor=form.actor
        )
    except ValueError as err:
        # The rule is release_zombie's; its message names the CLI's flags, so say it
        # in the page's words.
        raise ValueError(
            f'gpu {key} not released: tick "the job is gone" after the checks, and give a reason'
        ) from err
    return f"gpu {gpu.name} is {gpu.status.value}: released on the word of {form.actor}"


def _case_is(*states: CaseState) -> Callable[[CaseRecord | GpuRecord], bool]:
    return lambda r: isinstance(r, CaseRecord) and r.status in states


def _zombie(record: CaseRecord | GpuRecord) -> bool:
    return isinstance(record, GpuRecord) and record.status is GpuState.ZOMBIE


def _gpu_offline_req(wanted: bool) -> Callable[[CaseRecord | GpuRecord], bool]:
    return lambda r: isinstance(r, GpuRecord) and r.offline_requested is not wanted


_LIVE = tuple(s for s in CaseState if s not in TERMINAL_CASE_STATES)

ACTIONS: dict[tuple[str, str], Action] = {
    (a.target, a.name): a
    for a in (
        Action(
            "case",
            "retry",
            "Retry",
            "The case goes back to submitted for a new attempt (attempt + 1).",
            _case_is(CaseState.FAILED, CaseState.CANCELLED),
            _retry,
        ),
        Action(
            "case",
            "cancel",
            "Cancel",
            "A waiting case is cancelled now. A running job is killed by the engine; its "
            "GPU is freed only on evidence the job is gone, else it becomes a zombie.",
            _case_is(*_LIVE),
            _cancel,
        ),
        Action(
            "gpu",
            "offline",
            "Take offline",
            "An idle GPU leaves the pool now; a busy one after its job has ended.",
            _gpu_offline_req(True),
            _gpu_offline(True),
        ),
        Action(
            "gpu",
            "online",
            "Bring online",
            "The GPU rejoins the pool (a zombie still needs evidence its job is gone).",
            _gpu_offline_req(False),
            _gpu_offline(False),
        ),
        Action(
            "gpu",
            "release",
            "Release zombie",
            "The GPU is freed on your word that its job is gone, not on the engine's "
            "evidence. The audit row keeps who (this console and your address), when and "
            "why. Use it only for a job that can no longer be observed (host reinstalled "
            "or retired); otherwise wait: the engine frees the GPU once it sees the job gone.",
            _zombie,
            _release,
            attested=True,
        ),
    )
}


def offered(target: Target, record: CaseRecord | GpuRecord) -> list[Action]:
    """The actions whose button the page of ``record`` shows."""
    return [a for a in ACTIONS.values() if a.target == target and a.applies(record)]
