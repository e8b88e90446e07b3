"""Generated ground truth for one of our Pueue jobs, and the raw text the real tools print.

A :class:`PueueTruth` says what really happened (the job's phase, whether any of its
processes still run, what went wrong with Pueue or the probe); :func:`render` turns it
into the stdout of the adapter's status+probe command: ``pueue status --json`` in the
v3 or v4 shape (``shared/recipes/pueue-contract.md``, the captures in
``tests/remote/schedulers/data/pueue_status_v*.json``) between the adapter's delimiters, followed
by the marker probe's records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import strategies as st

from .fakes import PROBE_FAULTS, ProbeFacts, probe_fault, render_probe

__all__ = [
    "DIR",
    "JOB_ID",
    "LABEL",
    "PGID",
    "TOKEN",
    "PueueTruth",
    "Stranger",
    "pueue_truths",
    "render",
    "render_status",
]

LABEL = "mqic-7-a2"
DIR = "/work/mqic/case_7_a2"
JOB_ID = 4
PGID = 4242
#: The attempt's token (what the submit installed in ``<DIR>.mqi/token``).
TOKEN = "pueue-attempt-token-0007"
_T = "2026-11-30T11:58:01.123456789+00:00"

#: Where our job really is. ``spawning``: Pueue started ``sh -c``, the wrapper has not
#: written its pgid yet. ``never_ran``: Pueue failed it before our code ran.
#: ``removed_queued``: ``pueue remove`` while it was queued, so it never runs.
PHASES = (
    "queued",
    "spawning",
    "running",
    "exited",
    "signalled",
    "sigkilled",
    "never_ran",
    "removed_queued",
)

#: Pueue's honest view of each phase (several are right: e.g. not reaped yet).
_HONEST: dict[str, tuple[tuple[str | None, Any], ...]] = {
    "queued": (("Queued", None), ("Stashed", None), ("Locked", None)),
    "spawning": (("Running", None), ("Paused", None)),
    "running": (("Running", None), ("Paused", None)),
    "exited": (("Done", "by_exit"), ("Running", None)),
    "signalled": (("Done", "Killed"), ("Done", {"Failed": 143})),
    "sigkilled": (("Done", "Killed"), ("Running", None)),
    "never_ran": (
        ("Done", {"FailedToSpawn": "No such file or directory (os error 2)"}),
        ("Done", "Errored"),
        ("Done", "DependencyFailed"),
        ("Done", "Killed"),
    ),
    "removed_queued": ((None, None),),
}

#: What a stranger's task may look like (state, result).
_ANY_TASK = (
    ("Queued", None),
    ("Stashed", None),
    ("Running", None),
    ("Paused", None),
    ("Done", "Success"),
    ("Done", {"Failed": 1}),
    ("Done", "Killed"),
    ("Done", "Errored"),
)


@dataclass(frozen=True)
class Stranger:
    """Someone else's task: another label (or none)."""

    task_id: int
    label: str | None
    state: str
    result: Any


@dataclass(frozen=True)
class PueueTruth:
    """The ground truth of our job and of what Pueue and the probe make of it.

    Attributes:
        phase: One of :data:`PHASES`.
        exit_code: The command's exit code for ``exited``.
        lingering: A process of the wrapper's group outlived the wrapper.
        honest: Index into the honest Pueue views of the phase.
        crashed: pueued crashed hard and restored: Running/Paused became Done/Killed,
            processes untouched.
        cleaned: ``pueue clean`` removed our Done task.
        reused_by: A stranger's task now holds our id (only once it is free).
        probe: What goes wrong with the probe (``fakes.PROBE_FAULTS``, ``probe_fault``).
        shape: ``v3`` or ``v4`` JSON.
        output: ``ok``, ``garbage``, ``truncated_json``, ``status_failed``,
            ``cut_at`` (the whole stdout cut at ``cut_at``).
        cut_at: Fraction of the stdout kept for ``cut_at``.
        strangers: Other tasks in the list.
    """

    phase: str
    exit_code: int
    lingering: bool
    honest: int
    crashed: bool
    cleaned: bool
    reused_by: Stranger | None
    probe: str
    shape: str
    output: str
    cut_at: float
    strangers: tuple[Stranger, ...]

    @property
    def alive(self) -> bool:
        """Some process of our job runs now."""
        if self.phase in ("spawning", "running"):
            return True
        return self.lingering and self.phase in ("exited", "signalled")

    @property
    def may_start(self) -> bool:
        """Our job has not run yet but still can (queued, or ``sh -c`` about to exec)."""
        return self.phase in ("queued", "spawning")

    @property
    def finished(self) -> bool:
        """Nothing of our job runs, and nothing of it ever will."""
        return not self.alive and not self.may_start

    def our_task(self) -> tuple[str, Any] | None:
        """Our task's (state, result) in Pueue's list, None when it is not listed."""
        views = _HONEST[self.phase]
        state, result = views[self.honest % len(views)]
        if state is None:
            return None
        if result == "by_exit":
            result = "Success" if self.exit_code == 0 else {"Failed": self.exit_code}
        if self.crashed and state in ("Running", "Paused"):
            state, result = "Done", "Killed"
        if self.cleaned and state == "Done":
            return None
        return state, result

    def probe_facts(self) -> ProbeFacts:
        """What the probe prints for our directory (the submit installed the token).

        Our wrapper and every process it starts carry the token. ``spawning`` is the
        moment before the wrapper has written anything: only Pueue's ``sh -c`` runs, and
        it carries the token too, since ``pueue add`` ran with it in its environment
        (Pueue gives a task the environment of its ``add``). A ``lingering`` process
        stays in the wrapper's group.
        """
        facts = ProbeFacts(token=TOKEN, label=LABEL)
        run = {"token": TOKEN, "label": LABEL, "started": 1_764_500_000, "pgid": PGID}
        lingering = self.lingering and self.phase in ("exited", "signalled")
        if self.phase == "spawning":
            facts = ProbeFacts(token=TOKEN, label=LABEL, carriers=1)
        elif self.phase == "running":
            facts = ProbeFacts(**run, alive=True, carriers=2)  # type: ignore[arg-type]
        elif self.phase == "exited":
            facts = ProbeFacts(
                **run,  # type: ignore[arg-type]
                exit_code=self.exit_code,
                alive=lingering,
                carriers=int(lingering),
                tail="Traceback: boom\n",
            )
        elif self.phase == "signalled":
            facts = ProbeFacts(
                **run,  # type: ignore[arg-type]
                signal="TERM",
                exit_code=143,
                alive=lingering,
                carriers=int(lingering),
            )
        elif self.phase == "sigkilled":
            facts = ProbeFacts(**run, alive=False)  # type: ignore[arg-type]
        return probe_fault(facts, self.probe)


def _status_json(state: str, result: Any, shape: str) -> Any:
    if shape == "v3":
        if state == "Stashed":
            return {"Stashed": {"enqueue_at": None}}
        return {"Done": result} if state == "Done" else state
    times = {"enqueued_at": _T, "start": _T}
    variants: dict[str, dict[str, Any]] = {
        "Queued": {"enqueued_at": _T},
        "Stashed": {"enqueue_at": None},
        "Running": times,
        "Paused": times,
        "Locked": {"previous_status": {"Queued": {"enqueued_at": _T}}},
    }
    inner = variants.get(state, {})
    if state == "Done":
        inner = {**times, "end": _T, "result": result}
    return {state: inner}


def _task(task_id: int, label: str | None, state: str, result: Any, shape: str) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": task_id,
        "created_at": _T,
        "original_command": "sh /work/x/.mqi/wrapper.sh x -- moqui",
        "command": "sh /work/x/.mqi/wrapper.sh x -- moqui",
        "path": "/home/mqi",
        "envs": {"HOME": "/home/mqi", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        "group": "gpu0",
        "dependencies": [],
        "priority": 0,
        "label": label,
        "status": _status_json(state, result, shape),
    }
    if shape == "v3":
        running = state in ("Running", "Paused", "Done")
        task["enqueued_at"] = _T
        task["prev_status"] = "Queued"
        task["start"] = _T if running else None
        task["end"] = _T if state == "Done" else None
    return task


def render_status(truth: PueueTruth) -> str:
    """``pueue status --json`` as the daemon would print it for ``truth``."""
    tasks = {
        s.task_id: _task(s.task_id, s.label, s.state, s.result, truth.shape)
        for s in truth.strangers
    }
    ours = truth.our_task()
    if ours is not None:
        tasks[JOB_ID] = _task(JOB_ID, LABEL, ours[0], ours[1], truth.shape)
    elif truth.reused_by is not None:
        s = truth.reused_by
        tasks[JOB_ID] = _task(JOB_ID, s.label, s.state, s.result, truth.shape)
    groups = {
        "default": {"status": "Running", "parallel_tasks": 1},
        "gpu0": {"status": "Paused" if truth.crashed else "Running", "parallel_tasks": 1},
    }
    doc = {"tasks": {str(k): v for k, v in sorted(tasks.items())}, "groups": groups}
    return json.dumps(doc, indent=1)


def render(truth: PueueTruth) -> tuple[str, str]:
    """The (stdout, stderr) of the adapter's status+probe command for ``truth``."""
    body, rc, stderr = render_status(truth), 0, ""
    if truth.output == "garbage":
        body = "<html><body>502 Bad Gateway</body></html>"
    elif truth.output == "truncated_json":
        body = body[: len(body) // 2]
    elif truth.output == "status_failed":
        body, rc = "", 1
        stderr = "Error: Failed to initialize client.\nCouldn't connect to the daemon.\n"
    probe = render_probe(DIR, truth.probe_facts())
    noise = "@mqi not-base64!! dir 1\n"  # a line the parser must skip, not trip on
    out = f"Welcome to gpu-01\n@mqi-pueue-begin\n{body}\n@mqi-pueue-end {rc}\n{noise}{probe}"
    if truth.output == "cut_at":
        out = out[: int(len(out) * truth.cut_at)]
    return out, stderr


def _strangers(taken: set[int]) -> st.SearchStrategy[tuple[Stranger, ...]]:
    ids = st.integers(0, 9).filter(lambda i: i not in taken)
    one = st.builds(
        lambda i, lab, sr: Stranger(i, lab, sr[0], sr[1]),
        ids,
        st.sampled_from([None, "nightly-backup", "mqic_case_3", "mqic-8-a1"]),
        st.sampled_from(_ANY_TASK),
    )
    return st.lists(one, max_size=3, unique_by=lambda s: s.task_id).map(tuple)


@st.composite
def pueue_truths(draw: st.DrawFn) -> PueueTruth:
    """Any ground truth of our job, with any of the faults Pueue and the probe have."""
    phase = draw(st.sampled_from(PHASES))
    crashed = draw(st.booleans())
    truth = PueueTruth(
        phase=phase,
        exit_code=draw(st.sampled_from([0, 0, 1, 3, 137, 255])),
        lingering=draw(st.booleans()),
        honest=draw(st.integers(0, 3)),
        crashed=crashed,
        cleaned=draw(st.booleans()),
        reused_by=None,
        probe=draw(st.sampled_from(PROBE_FAULTS)),
        shape=draw(st.sampled_from(["v3", "v4"])),
        output=draw(
            st.sampled_from(
                ["ok", "ok", "ok", "garbage", "truncated_json", "status_failed", "cut_at"]
            )
        ),
        cut_at=draw(st.floats(0.0, 1.0)),
        strangers=draw(_strangers({JOB_ID})),
    )
    if truth.our_task() is None and draw(st.booleans()):
        state, result = draw(st.sampled_from(_ANY_TASK))
        label = draw(st.sampled_from([None, "nightly-backup", "mqic-7-a1"]))
        truth = replace(truth, reused_by=Stranger(JOB_ID, label, state, result))
    return truth
