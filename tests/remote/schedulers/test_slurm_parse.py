"""The pure Slurm parsers, on output captured from slurm-wlm 22.05 and on garbage."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqi_communicator.errors import SchedulerOutputError, SchedulerUnavailableError
from mqi_communicator.remote.job.markers import MarkerInfo
from mqi_communicator.remote.protocol import CommandResult, JobRef
from mqi_communicator.remote.schedulers.slurm.parse import (
    ID_RECORD,
    SQUEUE_END,
    STATE_MAP,
    SlurmError,
    classify_stderr,
    decode_wait_status,
    map_state,
    parse_id_records,
    parse_sbatch_id,
    parse_squeue,
    parse_squeue_section,
)
from mqi_communicator.remote.schedulers.slurm.status import decide_status, found_job, poll_statuses
from mqi_communicator.statemachine.jobs import JobState

DATA = Path(__file__).parent / "data"


def _data(name: str) -> str:
    return (DATA / name).read_text()


def test_captured_mixed_output_parses_every_state() -> None:
    jobs, bad = parse_squeue(_data("slurm_squeue_mixed.txt"))
    assert bad == []
    got = {j: (v.name, v.slurm_state, v.state, v.exit_code, v.signal) for j, v in jobs.items()}
    assert got["1"] == ("ok", "COMPLETED", JobState.SUCCEEDED, 0, None)
    assert got["2"] == ("bad", "FAILED", JobState.FAILED, 3, None)
    assert got["3"] == ("long", "CANCELLED", JobState.KILLED, None, 15)
    assert got["4"] == ("to", "TIMEOUT", JobState.FAILED, None, 15)
    assert got["5"] == ("held", "PENDING", JobState.QUEUED, 0, None)
    assert jobs["5"].reason == "JobHeldUser"
    assert jobs["5"].started_at is None
    assert jobs["4"].reason == "TimeLimit"
    assert jobs["1"].started_at is not None


def test_captured_running_output() -> None:
    jobs, bad = parse_squeue(_data("slurm_squeue_running.txt"))
    assert bad == []
    assert {j.state for j in jobs.values()} >= {JobState.RUNNING}


def test_name_is_last_and_may_hold_the_delimiter() -> None:
    jobs, _ = parse_squeue(_data("slurm_squeue_mixed.txt"))
    assert jobs["6"].name == "a_very_long_label_mqic_case_123456_a7_with|pipe and space"


@pytest.mark.parametrize(
    "text",
    [
        "garbage\n",
        "12|RUNNING|None|0|2026-11-28T21:40:04\n",  # truncated: no name, no terminator
        "12|RUNNING|None|0|2026-11-28T21:40:04|lab",  # cut inside the name
        "abc|RUNNING|None|0|N/A|x|\n",  # id not numeric
        "12||None|0|N/A|x|\n",  # no state
        "<html>proxy error</html>\n",
    ],
)
def test_garbage_lines_are_reported_not_guessed(text: str) -> None:
    jobs, bad = parse_squeue(text)
    assert jobs == {}
    assert bad


def test_unknown_state_maps_to_unknown_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        jobs, bad = parse_squeue("7|WIBBLING|None|0|N/A|lab|\n")
    assert bad == []
    assert jobs["7"].state is JobState.UNKNOWN
    assert "WIBBLING" in caplog.text


def test_state_map_covers_the_documented_states() -> None:
    alive = {"RUNNING", "COMPLETING", "SUSPENDED", "PREEMPTED", "REQUEUED", "STOPPED"}
    assert all(STATE_MAP[s] is JobState.RUNNING for s in alive)
    assert STATE_MAP["PENDING"] is JobState.QUEUED
    assert STATE_MAP["CONFIGURING"] is JobState.QUEUED
    assert STATE_MAP["COMPLETED"] is JobState.SUCCEEDED
    failed = {"FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "TIMEOUT", "BOOT_FAIL", "DEADLINE"}
    assert all(STATE_MAP[s] is JobState.FAILED for s in failed)
    assert STATE_MAP["CANCELLED"] is JobState.KILLED
    assert map_state("CANCELLED by 0") is JobState.KILLED


def test_only_completed_means_success() -> None:
    assert [s for s, v in STATE_MAP.items() if v is JobState.SUCCEEDED] == ["COMPLETED"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", (0, None)),
        ("768", (3, None)),
        ("15", (None, 15)),
        ("9", (None, 9)),
        ("", (None, None)),
    ],
)
def test_wait_status(raw: str, expected: tuple[int | None, int | None]) -> None:
    assert decode_wait_status(raw) == expected


def test_section_without_end_marker_is_incomplete() -> None:
    text = _data("slurm_squeue_mixed.txt")
    assert parse_squeue_section(text).complete is False
    assert parse_squeue_section("").complete is False
    full = parse_squeue_section(text + f"{SQUEUE_END} 0\n@mqi rest\n")
    assert full.complete
    assert full.exit_code == 0
    assert full.rest == "@mqi rest\n"


def test_empty_squeue_with_end_marker_is_a_complete_empty_answer() -> None:
    answer = parse_squeue_section(f"{SQUEUE_END} 0\n")
    assert answer.complete
    assert answer.jobs == {}


def test_stderr_classification_on_captured_messages() -> None:
    assert classify_stderr(_data("slurm_squeue_invalid_id.stderr.txt")) is SlurmError.INVALID_JOB_ID
    assert classify_stderr(_data("slurm_squeue_unreachable.stderr.txt")) is SlurmError.UNREACHABLE
    assert classify_stderr(_data("slurm_sbatch_unreachable.stderr.txt")) is SlurmError.UNREACHABLE
    assert classify_stderr(_data("slurm_sbatch_bad_partition.stderr.txt")) is SlurmError.OTHER
    assert classify_stderr("") is SlurmError.NONE


@pytest.mark.parametrize(
    ("out", "job_id"), [("17\n", "17"), ("17;cluster\n", "17"), ("x\n4\n", "4")]
)
def test_sbatch_id(out: str, job_id: str) -> None:
    assert parse_sbatch_id(out) == job_id


@pytest.mark.parametrize("out", ["", "\n", "Submitted batch job 17\n", "17;\n", "-3\n"])
def test_sbatch_garbage_raises(out: str) -> None:
    with pytest.raises(SchedulerOutputError):
        parse_sbatch_id(out)


@given(st.text())
def test_parser_never_crashes_and_never_invents_success(text: str) -> None:
    answer = parse_squeue_section(text)
    for job in answer.jobs.values():
        # Success only from a well-formed line literally saying COMPLETED.
        if job.state is JobState.SUCCEEDED:
            assert "|COMPLETED|" in job.raw


T = "7" * 32
REF = JobRef(job_id="12", label="lab", remote_dir="/d", token=T)
NEVER = MarkerInfo(dir_exists=True, label="lab", token=T, token_procs=0)
ALIVE = MarkerInfo(
    dir_exists=True, label="lab", pgid=99, started=1, group_alive=True, token=T, token_procs=1
)
OK = MarkerInfo(
    dir_exists=True,
    label="lab",
    pgid=99,
    started=1,
    exit_code=0,
    group_alive=False,
    token=T,
    token_procs=0,
)
BAD = replace(OK, exit_code=4, log_tail="x")
SIGKILLED = replace(OK, exit_code=None)


def _job(line: str):  # type: ignore[no-untyped-def]
    return parse_squeue(line)[0]["12"]


@pytest.mark.parametrize(
    ("marker", "state", "gone"),
    [
        (NEVER, JobState.ABSENT, True),
        (ALIVE, JobState.RUNNING, False),
        (OK, JobState.SUCCEEDED, True),
        (BAD, JobState.FAILED, True),
        (SIGKILLED, JobState.KILLED, True),
    ],
)
def test_forgotten_job_markers_decide(marker: MarkerInfo, state: JobState, gone: bool) -> None:
    status = decide_status(REF, None, True, marker)
    assert status.state is state
    assert status.processes_gone is gone


def test_forgotten_job_with_untrusted_answer_or_no_marker_record_is_unknown() -> None:
    assert decide_status(REF, None, False, OK).state is JobState.UNKNOWN
    assert decide_status(REF, None, True, None).state is JobState.UNKNOWN


def test_markers_of_another_label_are_not_evidence() -> None:
    other = replace(OK, label="zzz")
    assert decide_status(REF, None, True, other).state is JobState.UNKNOWN


def test_id_reused_by_another_name_lets_markers_decide() -> None:
    job = _job("12|COMPLETED|None|0|N/A|someone_else|\n")
    assert decide_status(REF, job, True, BAD).state is JobState.FAILED
    assert decide_status(REF, job, True, ALIVE).state is JobState.RUNNING


def test_cancelled_is_killed_only_once_the_group_is_gone() -> None:
    job = _job("12|CANCELLED|None|15|N/A|lab|\n")
    assert decide_status(REF, job, True, ALIVE).state is JobState.RUNNING
    assert decide_status(REF, job, True, None).state is JobState.RUNNING
    gone = decide_status(REF, job, True, SIGKILLED)
    assert gone.state is JobState.KILLED
    assert gone.processes_gone is True
    assert decide_status(REF, job, True, NEVER).state is JobState.KILLED


def test_slurm_failure_carries_exit_code_and_log_tail() -> None:
    status = decide_status(REF, _job("12|FAILED|NonZeroExitCode|1024|N/A|lab|\n"), True, BAD)
    assert (status.state, status.exit_code, status.log_tail) == (JobState.FAILED, 4, "x")


def test_unknown_slurm_state_stays_unknown_whatever_the_markers() -> None:
    job = _job("12|WIBBLING|None|0|N/A|lab|\n")
    assert decide_status(REF, job, True, OK).state is JobState.UNKNOWN


# A real poll command's output, captured from the live cluster (see the JSON's refs):
# succeeded, failed (exit 3), running, held (queued), a forgotten id whose wrapper runs,
# an id that names another job, and a job that never existed.
CAPTURE = json.loads((DATA / "slurm_poll_capture.json").read_text())
CAPTURED_REFS = [JobRef(*r) for r in CAPTURE["refs"]]
EXPECTED = [JobState(s) for s in CAPTURE["expected"]]
NON_TERMINAL = {JobState.UNKNOWN, JobState.QUEUED, JobState.RUNNING}


def _result(stdout: str) -> CommandResult:
    return CommandResult(CAPTURE["exit_code"], stdout, CAPTURE["stderr"])


def test_captured_poll_output_decodes() -> None:
    got = poll_statuses(CAPTURED_REFS, _result(CAPTURE["stdout"]))
    assert [got[r].state for r in CAPTURED_REFS] == EXPECTED
    assert EXPECTED == [
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.RUNNING,
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
        JobState.ABSENT,
    ]
    assert "dose grid exploded" in got[CAPTURED_REFS[1]].log_tail


def test_truncated_poll_output_never_invents_a_result() -> None:
    full = CAPTURE["stdout"]
    for cut in range(len(full)):
        got = poll_statuses(CAPTURED_REFS, _result(full[:cut]))
        for ref, expected in zip(CAPTURED_REFS, EXPECTED, strict=True):
            state = got[ref].state
            assert state is expected or state in NON_TERMINAL, (cut, ref, got[ref])


def test_empty_poll_output_is_unknown() -> None:
    got = poll_statuses(CAPTURED_REFS, CommandResult(0, "", ""))
    assert {s.state for s in got.values()} == {JobState.UNKNOWN}


def test_unreachable_controller_raises() -> None:
    stderr = _data("slurm_squeue_unreachable.stderr.txt")
    with pytest.raises(SchedulerUnavailableError):
        poll_statuses(CAPTURED_REFS, CommandResult(0, f"{SQUEUE_END} 1\n", stderr))


def test_single_unknown_id_exit_1_is_a_trusted_empty_answer() -> None:
    ref = CAPTURED_REFS[6]  # never existed: no directory
    stdout = f"{SQUEUE_END} 1\n" + CAPTURE["stdout"].partition(f"{SQUEUE_END} 0\n")[2]
    stderr = _data("slurm_squeue_invalid_id.stderr.txt")
    assert poll_statuses([ref], CommandResult(0, stdout, stderr))[ref].state is JobState.ABSENT
    other = CommandResult(0, stdout, "squeue: error: something else\n")
    assert poll_statuses([ref], other)[ref].state is JobState.UNKNOWN


@given(st.integers(min_value=0), st.text(max_size=20))
def test_garbage_spliced_into_poll_output_never_invents_success(pos: int, junk: str) -> None:
    full = CAPTURE["stdout"]
    pos %= len(full) + 1
    got = poll_statuses(CAPTURED_REFS, _result(full[:pos] + junk + full[pos:]))
    for ref, expected in zip(CAPTURED_REFS, EXPECTED, strict=True):
        if got[ref].state is JobState.SUCCEEDED:
            assert expected is JobState.SUCCEEDED, (pos, junk, got[ref])


def test_id_records_are_read_and_garbage_ignored() -> None:
    text = f"{ID_RECORD} 17\nnoise\n{ID_RECORD} x9\n{ID_RECORD} 4\n@mqi other\n"
    assert parse_id_records(text) == [17, 4]


def test_found_job_prefers_a_live_job_then_the_newest_of_our_name() -> None:
    running = _data("slurm_squeue_running.txt").splitlines()[1].replace("mqic_case_1_a1", "mine")
    text = f"{running}\n99|COMPLETED|None|0|2026-11-28T21:40:04|mine|\n{SQUEUE_END} 0\n"
    ref = found_job(parse_squeue_section(text), True, "mine", "/r/d", where="h", raw=text)
    assert ref is not None and ref.job_id == "10"  # running beats the newer completed job
    assert ref.token is None  # no marker record: the token is unknown
    done = text.replace(running + "\n", "")
    ref = found_job(parse_squeue_section(done), True, "mine", "/r/d", where="h", raw=done)
    assert ref is not None and ref.job_id == "99"


def test_found_job_refuses_an_untrusted_answer_or_a_missing_marker_record() -> None:
    answer = parse_squeue_section(f"{SQUEUE_END} 0\n")
    with pytest.raises(SchedulerOutputError, match="incomplete"):
        found_job(answer, False, "mine", "/r/d", where="h", raw="")
    with pytest.raises(SchedulerOutputError, match="no marker record"):
        found_job(answer, True, "mine", "/r/d", where="h", raw="")
