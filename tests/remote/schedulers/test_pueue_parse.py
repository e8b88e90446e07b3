"""The pure ``pueue status --json`` parser on captured v3/v4 output and on bad input.

``data/pueue_status_v3.json`` / ``_v4.json`` were captured from the stand-in
(tests/standins/pueue) with envs trimmed; the hand-written cases below add the variants
of the contract table the stand-in does not produce (Locked, Paused, FailedToSpawn, ...).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqi_communicator.remote.schedulers.pueue.parse import (
    STATUS_BEGIN,
    STATUS_END,
    PueueOutputError,
    TaskInfo,
    is_unavailable,
    parse_observation,
    parse_status,
    parse_task_id,
    parse_timestamp,
)

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("version", [3, 4])
def test_captured_samples(version: int) -> None:
    status = parse_status((DATA / f"pueue_status_v{version}.json").read_text())
    t = status.tasks
    assert status.groups == {"default": "Running", "gpu0": "Running"}
    assert (t[0].label, t[0].group, t[0].state, t[0].result) == (
        "mqic_case_1_a1",
        "gpu0",
        "Done",
        "Success",
    )
    assert (t[1].state, t[1].result, t[1].exit_code) == ("Done", "Failed", 3)
    assert t[2].state == "Running" and t[2].start is not None
    assert t[2].start.tzinfo is not None
    assert (t[3].state, t[3].result) == ("Done", "Killed")
    assert t[4].label is None and t[4].group == "default"
    assert t[5].state == "Queued" and t[5].start is None
    assert t[6].state == "Stashed"


def task(status: object, **extra: object) -> dict[str, object]:
    return {"id": 9, "group": "gpu0", "label": "x", "status": status, **extra}


def doc(*tasks: dict[str, object]) -> str:
    body = {str(i): t for i, t in enumerate(tasks)}
    return json.dumps(
        {"tasks": body, "groups": {"gpu0": {"status": "Paused", "parallel_tasks": 1}}}
    )


T = "2024-07-18T14:55:02.656354132+02:00"
V4_TIMES = {"enqueued_at": T, "start": T}


@pytest.mark.parametrize(
    ("raw", "state", "result", "code"),
    [
        ("Paused", "Paused", None, None),
        ("Locked", "Locked", None, None),
        ({"Done": {"FailedToSpawn": "no such file"}}, "Done", "FailedToSpawn", None),
        ({"Done": "DependencyFailed"}, "Done", "DependencyFailed", None),
        ({"Done": "Errored"}, "Done", "Errored", None),
        ({"Paused": V4_TIMES}, "Paused", None, None),
        ({"Locked": {"previous_status": {"Queued": {"enqueued_at": T}}}}, "Locked", None, None),
        ({"Done": {**V4_TIMES, "end": T, "result": {"Failed": 137}}}, "Done", "Failed", 137),
        (
            {"Done": {**V4_TIMES, "end": T, "result": {"FailedToSpawn": "x"}}},
            "Done",
            "FailedToSpawn",
            None,
        ),
        ({"Frozen": {}}, "Frozen", None, None),  # a future state: kept, mapped by the adapter
        ("Hibernating", "Hibernating", None, None),
    ],
)
def test_variants(raw: object, state: str, result: str | None, code: int | None) -> None:
    info = parse_status(doc(task(raw))).tasks[0]
    assert (info.state, info.result, info.exit_code) == (state, result, code)


def test_timestamps_keep_offset_and_microseconds() -> None:
    parsed = parse_timestamp(T)
    assert parsed is not None
    assert parsed.astimezone(UTC) == datetime(2024, 7, 18, 12, 55, 2, 656354, tzinfo=UTC)
    assert parse_timestamp("yesterday") is None and parse_timestamp(None) is None
    v4 = parse_status(doc(task({"Running": V4_TIMES}))).tasks[0]
    v3 = parse_status(doc(task("Running", start=T))).tasks[0]
    assert v3.start == v4.start == parsed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "Error: Failed to initialize client.",
        '{"tasks": {"0": {"id": 0, "group": "g", "status": "Runn',  # truncated
        "[]",
        '{"tasks": [], "groups": {}}',  # unknown version: tasks as a list
        '{"groups": {}}',
        '{"tasks": {}}',
        doc(task({"Done": {"Weird": 1, "Other": 2}})),
        doc(task(["Running"])),
        doc({"id": 1, "status": "Running"}),  # no group
        json.dumps({"tasks": {"zero": task("Running")}, "groups": {}}),
        doc(task("Running", label=5)),
    ],
)
def test_garbage_raises_typed_error(text: str) -> None:
    with pytest.raises(PueueOutputError):
        parse_status(text)


def test_empty_queue_is_valid() -> None:
    status = parse_status(
        '{"tasks": {}, "groups": {"default": {"status": "Running", "parallel_tasks": 1}}}'
    )
    assert status.tasks == {}


@given(st.text(max_size=200))
def test_random_text_never_yields_a_success(text: str) -> None:
    try:
        status = parse_status(text)
    except PueueOutputError:
        return
    assert all(isinstance(t, TaskInfo) for t in status.tasks.values())
    assert not any(t.result == "Success" for t in status.tasks.values())


@given(st.integers(min_value=0))
def test_any_truncation_of_a_sample_is_refused_or_exact(cut: int) -> None:
    full = (DATA / "pueue_status_v4.json").read_text()
    cut = cut % len(full)
    try:
        status = parse_status(full[:cut])
    except PueueOutputError:
        return
    assert status == parse_status(full)


def test_observation_splits_the_framed_status_from_the_probe() -> None:
    body = (DATA / "pueue_status_v4.json").read_text()
    out = f"motd\n{STATUS_BEGIN}\n{body}\n{STATUS_END} 0\n"
    obs = parse_observation(out, "")
    assert obs.pueue is not None and obs.pueue_problem == ""
    assert obs.pueue.tasks[0].label == "mqic_case_1_a1"
    assert obs.markers == {}


@pytest.mark.parametrize(
    ("out", "err", "problem"),
    [
        (f"{STATUS_BEGIN}\n{{}}", "", "not delimited"),
        (f"{STATUS_BEGIN}\n\n{STATUS_END} 1\n", "no daemon", "exit 1: no daemon"),
        (f"{STATUS_BEGIN}\nnot json\n{STATUS_END} 0\n", "", "not JSON"),
    ],
)
def test_observation_without_a_usable_status_says_why(out: str, err: str, problem: str) -> None:
    obs = parse_observation(out, err)
    assert obs.pueue is None and problem in obs.pueue_problem


def test_task_id_is_the_last_line_or_none() -> None:
    assert parse_task_id("New task added (id 41).\n42\n") == "42"
    assert parse_task_id("") is None
    assert parse_task_id("42\nnope\n") is None


def test_unavailable_daemon_messages() -> None:
    assert is_unavailable("Error: Couldn't connect to the daemon. Is it running?")
    assert is_unavailable("Failed to initialize client: no such file")
    assert not is_unavailable("Error: group gpu9 does not exist")
