"""Pure parser for ``pueue status --json`` (Pueue 3.x and 4.x shapes).

The two shapes differ in where the timestamps and the result live (see
``shared/recipes/pueue-contract.md``): v3 has ``"status": "Running"`` and
``{"Done": R}`` with ``start``/``end`` on the task; v4 wraps every status in an object
that carries them, e.g. ``{"Done": {"enqueued_at", "start", "end", "result": R}}``.
Each task is read in whichever shape it has. Anything that is not a readable status
document (empty, truncated, not JSON, no ``tasks``) raises :class:`PueueOutputError`;
callers map that to ``JobState.UNKNOWN``, never to success.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mqi_communicator.errors import SchedulerOutputError
from mqi_communicator.remote.job.markers import MarkerInfo, parse_probe

__all__ = [
    "STATUS_BEGIN",
    "STATUS_END",
    "Observation",
    "PueueOutputError",
    "PueueStatus",
    "TaskInfo",
    "is_unavailable",
    "parse_observation",
    "parse_status",
    "parse_task_id",
    "parse_timestamp",
    "read_framed_status",
]

#: Our observe command frames ``pueue status --json`` with these (END carries its exit code).
STATUS_BEGIN = "@mqi-pueue-begin"
STATUS_END = "@mqi-pueue-end"

_FRACTION = re.compile(r"(\.\d{6})\d+")


class PueueOutputError(SchedulerOutputError):
    """``pueue status --json`` output could not be understood."""


@dataclass(frozen=True)
class TaskInfo:
    """One Pueue task, reduced to what the adapter needs.

    Attributes:
        task_id: Pueue's id (reused after clean/remove: check ``label``).
        label: The task's label, None when unset.
        group: The Pueue group.
        state: ``Queued``, ``Stashed``, ``Running``, ``Paused``, ``Locked``, ``Done``, or
            whatever unknown name a newer Pueue sends (the adapter maps it to UNKNOWN).
        result: For ``Done``: ``Success``, ``Failed``, ``FailedToSpawn``, ``Killed``,
            ``Errored``, ``DependencyFailed`` (or an unknown name); else None.
        exit_code: The code of a ``Failed`` result, else None.
        start: When the task started, if known.
    """

    task_id: int
    label: str | None
    group: str
    state: str
    result: str | None = None
    exit_code: int | None = None
    start: datetime | None = None


@dataclass(frozen=True)
class PueueStatus:
    """The parsed status document: tasks by id and group names to their status."""

    tasks: dict[int, TaskInfo]
    groups: dict[str, str]


def parse_timestamp(value: object) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Python keeps microseconds); None when unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _result(raw: object) -> tuple[str, int | None]:
    if isinstance(raw, str):
        return raw, None
    if isinstance(raw, dict) and len(raw) == 1:
        name, value = next(iter(raw.items()))
        code = value if isinstance(value, int) and not isinstance(value, bool) else None
        return str(name), code
    raise PueueOutputError(f"unreadable task result: {raw!r}")


def _task(key: str, raw: object) -> TaskInfo:
    if not isinstance(raw, dict):
        raise PueueOutputError(f"task {key}: not an object")
    try:
        task_id = int(key)
        status = raw["status"]
        group = raw["group"]
    except (KeyError, ValueError) as err:
        raise PueueOutputError(f"task {key}: missing or bad field: {err}") from err
    label = raw.get("label")
    if label is not None and not isinstance(label, str):
        raise PueueOutputError(f"task {key}: label is not a string")
    start = parse_timestamp(raw.get("start"))  # v3 keeps it on the task
    result: str | None = None
    exit_code: int | None = None
    if isinstance(status, str):  # v3 unit variants
        state = status
    elif isinstance(status, dict) and len(status) == 1:
        state, inner = next(iter(status.items()))
        if state == "Done":
            if isinstance(inner, dict) and "result" in inner:  # v4
                result, exit_code = _result(inner["result"])
            else:  # v3: {"Done": R}
                result, exit_code = _result(inner)
        if isinstance(inner, dict) and "start" in inner:
            start = parse_timestamp(inner["start"])
    else:
        raise PueueOutputError(f"task {key}: unreadable status {status!r}")
    return TaskInfo(task_id, label, str(group), str(state), result, exit_code, start)


def parse_status(text: str) -> PueueStatus:
    """Parse ``pueue status --json`` output.

    Raises:
        PueueOutputError: empty, truncated, non-JSON, or not a status document.
    """
    if not text.strip():
        raise PueueOutputError("empty pueue status output")
    try:
        doc: Any = json.loads(text)
    except ValueError as err:
        raise PueueOutputError(f"pueue status output is not JSON: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), dict):
        raise PueueOutputError("pueue status output has no 'tasks' object")
    groups_raw = doc.get("groups")
    if not isinstance(groups_raw, dict):
        raise PueueOutputError("pueue status output has no 'groups' object")
    groups = {
        str(name): str(g.get("status")) if isinstance(g, dict) else "?"
        for name, g in groups_raw.items()
    }
    tasks = {info.task_id: info for info in (_task(k, v) for k, v in doc["tasks"].items())}
    return PueueStatus(tasks=tasks, groups=groups)


@dataclass(frozen=True)
class Observation:
    """What one status+probe command saw; ``pueue`` is None when Pueue did not answer."""

    pueue: PueueStatus | None
    pueue_problem: str
    markers: dict[str, MarkerInfo]


def read_framed_status(
    stdout: str, begin: str, end: str, *, exit_detail: str = ""
) -> tuple[PueueStatus | None, str, str]:
    """Read ``pueue status --json`` framed by ``begin`` and ``end <exit code>``.

    Returns:
        (the status or None, why not -- ``exit_detail`` follows a non-zero exit code --,
        the text after the frame).
    """
    _banner, sep, rest = stdout.partition(f"{begin}\n")
    body, sep2, after = rest.partition(f"\n{end} ")
    rc = after.split("\n", 1)[0].strip()
    if not sep or not sep2:
        return None, "status output not delimited (truncated?)", after
    if rc != "0":
        return None, f"pueue status exit {rc}{exit_detail}", after
    try:
        return parse_status(body), "", after
    except SchedulerOutputError as err:
        return None, str(err), after


def parse_observation(stdout: str, stderr: str) -> Observation:
    """Split an observe command's output (framed status, then the marker probe)."""
    detail = f": {stderr.strip()[-500:]}"
    status, problem, after = read_framed_status(
        stdout, STATUS_BEGIN, STATUS_END, exit_detail=detail
    )
    return Observation(status, problem, parse_probe(after))


def is_unavailable(stderr: str) -> bool:
    """Whether a pueue client's stderr says the daemon could not be reached."""
    text = stderr.lower()
    return "connect to the daemon" in text or "failed to initialize client" in text


def parse_task_id(stdout: str) -> str | None:
    """The id ``pueue add --print-task-id`` printed (its last line), or None."""
    lines = stdout.strip().splitlines()
    if not lines or not lines[-1].strip().isdigit():
        return None
    return lines[-1].strip()
