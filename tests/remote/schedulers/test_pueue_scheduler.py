"""PueueScheduler against the real stand-in daemon, through LocalTransport and SSH."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from mqi_communicator.errors import SchedulerUnavailableError, SubmissionRejectedError
from mqi_communicator.remote.protocol import GpuBinding, JobRef, JobSpec, JobStatus, Transport
from mqi_communicator.remote.schedulers.pueue.scheduler import PueueScheduler
from mqi_communicator.remote.schedulers.pueue.status import MARKER_ONLY_PREFIX
from mqi_communicator.statemachine.jobs import JobState
from tests.infra.processes import group_gone
from tests.infra.pueue import PueueStandin

from ..conftest import poll_until
from ..job.test_wrapper import mqi, token_for

TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED}
GPU = GpuBinding(name="gpu0", pueue_group="gpu0", cuda_devices="0")


@pytest.fixture
def sched(pueue: PueueStandin, job_transport: Transport) -> PueueScheduler:
    pueue.cli("group", "add", "gpu0", "-p", "4", check=True)
    return PueueScheduler(job_transport, pueue.command, timeout=30, kill_grace_s=3)


def spec(case: Path, command: list[str], label: str | None = None) -> JobSpec:
    case.mkdir(parents=True, exist_ok=True)
    return JobSpec(
        label=label or f"mqic-{case.name}",
        remote_dir=str(case),
        command=command,
        gpu=GPU,
        token=token_for(case),
    )


def terminal_and_gone(s: JobStatus) -> bool:
    return s.state in TERMINAL and s.processes_gone is True


def test_success_and_failure_in_one_poll(sched: PueueScheduler, tmp_path: Path) -> None:
    ok = sched.submit(spec(tmp_path / "ok", ["sh", "-c", 'echo "gpu=$CUDA_VISIBLE_DEVICES"']))
    bad = sched.submit(spec(tmp_path / "bad", ["sh", "-c", "echo 'MOQUI: bad beam' >&2; exit 7"]))
    assert ok.job_id.isdigit() and bad.job_id.isdigit() and ok.job_id != bad.job_id
    poll_until(sched, ok, terminal_and_gone)
    poll_until(sched, bad, terminal_and_gone)
    statuses = sched.poll([ok, bad])
    assert statuses[ok].state is JobState.SUCCEEDED and statuses[ok].exit_code == 0
    assert (mqi(tmp_path / "ok") / "job.log").read_text() == "gpu=0\n"
    assert statuses[bad].state is JobState.FAILED and statuses[bad].exit_code == 7
    assert "MOQUI: bad beam" in statuses[bad].log_tail


@pytest.mark.parametrize("name", ["sp ace", "q'uote", "d$(touch PWNED)", "ü案", "-dash"])
def test_hostile_case_dirs(sched: PueueScheduler, tmp_path: Path, name: str) -> None:
    ref = sched.submit(spec(tmp_path / name, ["sh", "-c", "pwd; exit 2"], label=f"l {name}'"))
    status = poll_until(sched, ref, terminal_and_gone)
    assert (status.state, status.exit_code) == (JobState.FAILED, 2)
    assert str(tmp_path / name) in status.log_tail
    assert not list(tmp_path.rglob("PWNED"))


def test_unknown_group_is_rejected(sched: PueueScheduler, tmp_path: Path) -> None:
    bad = JobSpec(
        "l",
        str(tmp_path),
        ["true"],
        GpuBinding("gpu9", pueue_group="gpu9"),
        token=token_for(tmp_path),
    )
    with pytest.raises(SubmissionRejectedError, match="doesn't exists"):
        sched.submit(bad)


def test_queued_then_running(pueue: PueueStandin, sched: PueueScheduler, tmp_path: Path) -> None:
    pueue.cli("parallel", "1", "-g", "gpu0", check=True)
    first = sched.submit(spec(tmp_path / "a", ["sleep", "60"]))
    second = sched.submit(spec(tmp_path / "b", ["true"]))
    poll_until(sched, first, lambda s: s.state is JobState.RUNNING)
    status = sched.poll([second])[second]
    assert status.state is JobState.QUEUED and status.processes_gone is True
    sched.kill(first)
    assert poll_until(sched, second, terminal_and_gone).state is JobState.SUCCEEDED


def test_kill_is_confirmed_only_by_a_later_poll(sched: PueueScheduler, tmp_path: Path) -> None:
    ref = sched.submit(spec(tmp_path / "k", ["sh", "-c", "sleep 60 & wait"]))
    assert poll_until(sched, ref, lambda s: s.state is JobState.RUNNING).state is JobState.RUNNING
    assert sched.kill(ref) is None  # only a request
    status = poll_until(sched, ref, terminal_and_gone)
    assert status.state is JobState.KILLED and status.processes_gone is True


def test_reused_id_of_a_stranger_is_not_ours(
    pueue: PueueStandin, sched: PueueScheduler, tmp_path: Path
) -> None:
    ours = sched.submit(spec(tmp_path / "ours", ["true"]))
    poll_until(sched, ours, terminal_and_gone)
    gone = sched.submit(spec(tmp_path / "wiped", ["true"]))
    poll_until(sched, gone, terminal_and_gone)
    pueue.cli("clean", check=True)
    mqi(tmp_path / "wiped").rename(tmp_path / "wiped-old")
    # The stranger gets our old id and runs.
    stranger = pueue.cli("add", "-p", "--label", "stranger", "-g", "gpu0", "--", "sleep 60")
    assert stranger.stdout.strip() == ours.job_id
    pueue.wait_for_status(int(ours.job_id), lambda t: "Running" in str(t["status"]))
    statuses = sched.poll([ours, gone])
    assert statuses[ours].state is JobState.SUCCEEDED, "our markers, not the stranger's task"
    assert statuses[gone].state is JobState.ABSENT
    sched.kill(ours)  # must not touch the stranger
    time.sleep(1)
    assert "Running" in str(pueue.wait_for_status(int(ours.job_id), lambda t: True)["status"])  # type: ignore[index]


def test_the_task_carries_the_token_from_its_spawn(
    pueue: PueueStandin, sched: PueueScheduler, tmp_path: Path
) -> None:
    """Pueue gives a task the environment of its ``add``: ours holds the attempt's token,
    so ``sh -c`` carries it before the wrapper runs a line (a daemon crash in that moment
    then cannot make the job read ABSENT while it may still start)."""
    case = tmp_path / "spawn"
    ref = sched.submit(spec(case, ["true"]))
    task = pueue.wait_for_status(int(ref.job_id), lambda t: True)
    assert task is not None
    assert task["envs"].get("MQI_JOB_TOKEN") == token_for(case)  # type: ignore[index]
    # ...and never on a command line that `ps` shows.
    assert token_for(case) not in str(task["command"])  # type: ignore[index]


def test_hard_daemon_crash(pueue: PueueStandin, sched: PueueScheduler, tmp_path: Path) -> None:
    ref = sched.submit(spec(tmp_path / "c", ["sh", "-c", "trap '' TERM; sleep 60 & wait"]))
    poll_until(sched, ref, lambda s: s.state is JobState.RUNNING)
    queued_dir = tmp_path / "never"
    pueue.crash()
    # Pueue down: the markers still answer for a started job, nothing else is claimed.
    with pytest.raises(SchedulerUnavailableError):
        sched.submit(spec(queued_dir, ["true"]))
    down = sched.poll(
        [ref, JobRef("99", "mqic-never", str(queued_dir), token=token_for(queued_dir))]
    )
    assert down[ref].state is JobState.RUNNING
    assert (
        down[JobRef("99", "mqic-never", str(queued_dir), token=token_for(queued_dir))].state
        is JobState.UNKNOWN
    )
    pueue.start()
    status = sched.poll([ref])[ref]
    assert status.state is JobState.RUNNING, "Pueue says Killed, but the group is alive"
    assert "Killed" in status.detail and status.processes_gone is False
    # pueue kill refuses a Done task: the adapter signals the wrapper's group itself.
    sched.kill(ref)
    assert sched.poll([ref])[ref].state is JobState.RUNNING, "TERM is ignored; KILL comes later"
    status = poll_until(sched, ref, terminal_and_gone)
    assert status.state is JobState.KILLED


def test_find_by_label_after_restart(
    pueue: PueueStandin, sched: PueueScheduler, job_transport: Transport, tmp_path: Path
) -> None:
    ref = sched.submit(spec(tmp_path / "f", ["sleep", "60"], label="mqic_case_3_a1"))
    fresh = PueueScheduler(job_transport, pueue.command, timeout=30)
    assert fresh.find_by_label("mqic_case_3_a1", ref.remote_dir) == ref
    assert fresh.find_by_label("mqic_case_4_a1", str(tmp_path / "nothing")) is None
    poll_until(sched, ref, lambda s: s.state is JobState.RUNNING)
    pueue.crash()
    (pueue.dir / "state.json").unlink()  # Pueue lost everything (e.g. 4.0 upgrade)
    pueue.start()
    found = fresh.find_by_label("mqic_case_3_a1", ref.remote_dir)
    assert found is not None and found.job_id.startswith(MARKER_ONLY_PREFIX)
    assert fresh.poll([found])[found].state is JobState.RUNNING
    fresh.kill(found)
    assert poll_until(fresh, found, terminal_and_gone).state is JobState.KILLED


def test_garbage_status_is_unknown_never_success(job_transport: Transport, tmp_path: Path) -> None:
    (tmp_path / "q").mkdir()
    liar = PueueScheduler(job_transport, ("echo", '{"tasks": {"0": {"status": "Don'), timeout=30)
    ref = JobRef("0", "mqic-q", str(tmp_path / "q"), token=token_for(tmp_path))
    status = liar.poll([ref])[ref]
    assert status.state is JobState.UNKNOWN and "JSON" in status.detail


def test_cleanup_leaves_no_group(
    pueue: PueueStandin, sched: PueueScheduler, tmp_path: Path
) -> None:
    ref = sched.submit(spec(tmp_path / "z", ["sleep", "60"]))
    # started_at: the wrapper has written its pgid and start markers.
    poll_until(sched, ref, lambda s: s.state is JobState.RUNNING and s.started_at is not None)
    pgid = int((mqi(tmp_path / "z") / "pgid").read_text())
    pueue.cleanup()
    if not group_gone(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        pytest.fail("stand-in cleanup left a task group alive")
