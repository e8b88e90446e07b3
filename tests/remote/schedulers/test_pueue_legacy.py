"""The legacy Pueue parser and decision, from captured and rendered output (pure)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from mqi_communicator.remote.protocol import JobRef
from mqi_communicator.remote.schedulers.pueue.legacy import legacy_status, parse_output, script
from mqi_communicator.remote.schedulers.pueue.parse import parse_status
from mqi_communicator.statemachine.jobs import JobState


def _task(tid: int, label: str | None, group: str, status: Any) -> dict[str, Any]:
    return {"id": tid, "label": label, "group": group, "status": status}


def _doc(*tasks: dict[str, Any]) -> str:
    return json.dumps(
        {"tasks": {str(t["id"]): t for t in tasks}, "groups": {"gpu0": {"status": "Running"}}}
    )


def _out(doc: str, rc: int = 0, scan: list[str] | None = None, cut: bool = False) -> str:
    text = f"banner\n@mqi-legacy-begin\n{doc}\n@mqi-legacy-end {rc}\n"
    if scan is None:
        return text + "@mqi-legacy-scan unavailable\n"
    text += "@mqi-legacy-scan ok\n" + "".join(f"PUEUE_GROUP={g}\n" for g in scan)
    return text if cut else text + "@mqi-legacy-scan-end\n"


REF = JobRef("3", "mqic_case_5", "", legacy=True, group="gpu0")
RUNNING = _task(3, "mqic_case_5", "gpu0", "Running")
KILLED = _task(3, "mqic_case_5", "gpu0", {"Done": "Killed"})
STRANGER = _task(3, "someone-else", "other", "Running")


def status_of(ref: JobRef, out: str) -> tuple[JobState, bool | None]:
    pueue, problem, groups = parse_output(out)
    s = legacy_status(ref, pueue, groups, problem)
    return s.state, s.processes_gone


def test_script_is_one_command_with_quoted_pueue_argv() -> None:
    text = script(["/opt/my pueue", "-c", "cfg"])
    assert "'/opt/my pueue' -c cfg status --json" in text
    assert "/proc/[0-9]*/environ" in text


def test_parse_output_counts_live_processes_per_group() -> None:
    pueue, problem, groups = parse_output(_out(_doc(RUNNING), scan=["gpu0", "gpu0", "x"]))
    assert pueue is not None and problem == ""
    assert groups == Counter({"gpu0": 2, "x": 1})
    assert parse_output(_out(_doc(RUNNING)))[2] is None  # scan unavailable
    assert parse_output(_out(_doc(RUNNING), scan=["gpu0"], cut=True))[2] is None  # truncated
    broken, why, _ = parse_output(_out("{not json", scan=[]))
    assert broken is None and "not JSON" in why
    assert parse_output(_out(_doc(RUNNING), rc=2, scan=[]))[0] is None


@pytest.mark.parametrize(
    "task,scan,expected",
    [
        (RUNNING, ["gpu0"], (JobState.RUNNING, False)),
        (_task(3, "mqic_case_5", "gpu0", {"Queued": {}}), [], (JobState.QUEUED, None)),
        (_task(3, "mqic_case_5", "gpu0", {"Done": "Success"}), [], (JobState.SUCCEEDED, True)),
        (_task(3, "mqic_case_5", "gpu0", {"Done": {"Failed": 3}}), [], (JobState.FAILED, True)),
        (KILLED, [], (JobState.KILLED, True)),
        # Pueue says Killed (restored after a hard crash) but a process of the group lives.
        (KILLED, ["gpu0"], (JobState.KILLED, False)),
        (KILLED, None, (JobState.KILLED, None)),
        # The id is a stranger's now: ABSENT, and not gone while the group still runs.
        (STRANGER, ["gpu0"], (JobState.ABSENT, False)),
        (STRANGER, ["other"], (JobState.ABSENT, True)),
        (_task(3, "mqic_case_5", "gpu0", {"Done": "Mystery"}), [], (JobState.UNKNOWN, None)),
    ],
)
def test_legacy_status(
    task: dict[str, Any], scan: list[str] | None, expected: tuple[JobState, bool | None]
) -> None:
    assert status_of(REF, _out(_doc(task), scan=scan)) == expected


def test_label_less_or_odd_refs_match_nothing_and_prove_nothing() -> None:
    doc = _out(_doc(_task(3, None, "gpu0", {"Done": "Success"})), scan=[])
    # The old bug: an empty label "matched" a task without label; here it is UNKNOWN.
    assert status_of(JobRef("3", "", "", legacy=True), doc)[0] is JobState.UNKNOWN
    assert status_of(JobRef("x3", "mqic_case_5", "", legacy=True), doc)[0] is JobState.UNKNOWN
    assert status_of(REF, _out("", scan=[]))[0] is JobState.UNKNOWN


def test_without_an_id_every_task_so_labelled_counts() -> None:
    ref = JobRef("", "mqic_case_5", "", legacy=True, group="gpu0")
    done = _task(2, "mqic_case_5", "gpu0", {"Done": "Success"})
    assert status_of(ref, _out(_doc(done, RUNNING), scan=["gpu0"]))[0] is JobState.RUNNING
    assert status_of(ref, _out(_doc(done), scan=[])) == (JobState.SUCCEEDED, True)
    assert status_of(ref, _out(_doc(STRANGER), scan=[])) == (JobState.ABSENT, True)


def test_real_status_shapes_parse() -> None:
    v3 = _doc(_task(3, "mqic_case_5", "gpu0", {"Done": {"Failed": 9}}))
    assert parse_status(v3).tasks[3].exit_code == 9
    assert status_of(REF, _out(v3, scan=[])) == (JobState.FAILED, True)
