"""The operator actions of the web console, as data: what each does and when it is offered.

Every action calls the library (:class:`~mqi_communicator.service.Communicator`), the
same calls as the CLI's ``cases retry|cancel`` and ``gpus offline|online``; none writes
a state itself, so the state machine stays the only writer of states and every change
leaves its audit row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..persistence import CaseRecord, GpuRecord
from ..service import Communicator
from ..statemachine import TERMINAL_CASE_STATES, CaseState, GpuState

__all__ = ["ACTIONS", "Action", "Target", "offered"]

Target = Literal["case", "gpu"]


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
    """

    target: Target
    name: str
    label: str
    explain: str
    applies: Callable[[CaseRecord | GpuRecord], bool]
    run: Callable[[Communicator, str], str]


def _retry(comm: Communicator, key: str) -> str:
    case = comm.retry(int(key))
    return f"case {case.id} ({case.name}) is {case.status.value} again, attempt {case.attempt}"


def _cancel(comm: Communicator, key: str) -> str:
    case = comm.cancel(int(key))
    if case.status in TERMINAL_CASE_STATES:
        return f"case {case.id} ({case.name}) is {case.status.value}"
    return (
        f"case {case.id} ({case.name}): cancel requested while {case.status.value}; the "
        "engine kills its job and cancels the case once the job is provably gone"
    )


def _gpu_offline(offline: bool) -> Callable[[Communicator, str], str]:
    def run(comm: Communicator, key: str) -> str:
        gpu = comm.set_gpu_offline(key, offline)
        if offline and gpu.status is not GpuState.OFFLINE:
            return (
                f"gpu {gpu.name}: offline requested; it is {gpu.status.value} and goes "
                "offline once its job is provably gone"
            )
        return f"gpu {gpu.name} is {gpu.status.value}"

    return run


def _case_is(*states: CaseState) -> Callable[[CaseRecord | GpuRecord], bool]:
    return lambda r: isinstance(r, CaseRecord) and r.status in states


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
        # HOOK(zombie release): the audited operator release of a zombie GPU is added to
        # the library by other work. Add it here as Action("gpu", "release", ...) calling
        # that library method; the GPU page then offers its button (with confirmation).
    )
}


def offered(target: Target, record: CaseRecord | GpuRecord) -> list[Action]:
    """The actions whose button the page of ``record`` shows."""
    return [a for a in ACTIONS.values() if a.target == target and a.applies(record)]
