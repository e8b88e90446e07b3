"""LocalScheduler on this machine through the real LocalTransport."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_communicator.errors import RemoteCommandError, SchedulerOutputError
from mqi_communicator.remote.protocol import GpuBinding, JobRef, JobSpec, Transport
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from mqi_communicator.remote.schedulers.local.status import found_job
from mqi_communicator.statemachine.jobs import JobState

from ..conftest import poll_until
from ..job.test_markers import HOSTILE_NAMES
from ..job.test_wrapper import token_for

TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED}


@pytest.fixture
def sched(job_transport: Transport) -> Iterator[LocalScheduler]:
    scheduler = LocalScheduler(job_transport, kill_grace_s=0.5, timeout=30)
    started: list[JobRef] = []
    original = scheduler.submit

    def submit(spec: JobSpec) -> JobRef:
        ref = original(spec)
        started.append(ref)
        return ref

    scheduler.submit = submit  # type: ignore[method-assign]
    yield scheduler
    for ref in started:  # never leave jobs behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(ref.job_id), signal.SIGKILL)


def spec(case: Path, command: list[str], label: str = "job", cuda: str | None = "1") -> JobSpec:
    case.mkdir(parents=True, exist_ok=True)
    return JobSpec(
        label=label,
        remote_dir=str(case),
        command=command,
        gpu=GpuBinding(name="gpu1", cuda_devices=cuda),
        env={"MQI_TEST": "x y"},
        token=token_for(case),
    )


def test_submit_runs_detached_group_with_cuda_devices(
    sched: LocalScheduler, tmp_path: Path
) -> None:
    case = tmp_path / "case"
    ref = sched.submit(
        spec(case, ["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES|$MQI_TEST" > env.txt; sleep 60'])
    )
    assert os.getpgid(int(ref.job_id)) == int(ref.job_id)
    assert os.getsid(int(ref.job_id)) == int(ref.job_id), "detached into its own session"
    status = sched.poll([ref])[ref]
    assert status.state is JobState.RUNNING and status.processes_gone is False
    assert status.started_at is not None
    while not (case / "env.txt").exists():
        time.sleep(0.02)
    assert (case / "env.txt").read_text() == "1|x y\n"


def test_success(sched: LocalScheduler, tmp_path: Path) -> None:
    ref = sched.submit(spec(tmp_path / "ok", ["true"]))
    status = poll_until(sched, ref, lambda s: s.processes_gone is True)
    assert status.state is JobState.SUCCEEDED and status.exit_code == 0


def test_failure_has_exit_code_and_log_tail(sched: LocalScheduler, tmp_path: Path) -> None:
    ref = sched.submit(spec(tmp_path / "bad", ["sh", "-c", "echo 'dose grid invalid' >&2; exit 9"]))
    status = poll_until(sched, ref, lambda s: s.state in TERMINAL)
    assert status.state is JobState.FAILED and status.exit_code == 9
    assert "dose grid invalid" in status.log_tail


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_case_dirs(sched: LocalScheduler, tmp_path: Path, name: str) -> None:
    ref = sched.submit(spec(tmp_path / name, ["sh", "-c", "exit 3"], label=f"l {name}"))
    status = poll_until(sched, ref, lambda s: s.state in TERMINAL)
    assert (status.state, status.exit_code) == (JobState.FAILED, 3)
    assert not list(tmp_path.rglob("PWNED"))


def test_kill_is_confirmed_only_by_a_later_poll(sched: LocalScheduler, tmp_path: Path) -> None:
    # The job ignores TERM: only the SIGKILL after the grace period ends it.
    ref = sched.submit(spec(tmp_path / "stubborn", ["sh", "-c", "trap '' TERM; sleep 60"]))
    assert sched.poll([ref])[ref].state is JobState.RUNNING
    sched.kill(ref)
    status = poll_until(sched, ref, lambda s: s.processes_gone is True)
    assert status.state is JobState.KILLED and status.processes_gone is True


def test_kill_cooperative_job_records_term(sched: LocalScheduler, tmp_path: Path) -> None:
    ref = sched.submit(spec(tmp_path / "coop", ["sleep", "60"]))
    sched.kill(ref)
    status = poll_until(sched, ref, lambda s: s.processes_gone is True)
    assert status.state is JobState.KILLED and status.exit_code == 143
    assert "TERM" in status.detail


def test_kill_refuses_a_group_the_markers_do_not_name(
    sched: LocalScheduler, tmp_path: Path
) -> None:
    ref = sched.submit(spec(tmp_path / "mine", ["sleep", "60"]))
    stranger = JobRef(str(os.getpid()), "job", ref.remote_dir, token=ref.token)
    with pytest.raises(RemoteCommandError):
        sched.kill(stranger)
    assert sched.poll([ref])[ref].state is JobState.RUNNING


def test_survives_a_restart_and_is_found_by_label(
    sched: LocalScheduler, job_transport: Transport, tmp_path: Path
) -> None:
    case = tmp_path / "case"
    ref = sched.submit(spec(case, ["sleep", "60"], label="mqic-7-a1"))
    fresh = LocalScheduler(job_transport, timeout=30)
    assert fresh.find_by_label("mqic-7-a1", str(case)) == ref
    assert fresh.find_by_label("someone-else", str(case)) is None
    assert fresh.poll([ref])[ref].state is JobState.RUNNING
    assert sched.submit(spec(case, ["sleep", "60"], label="mqic-7-a1")) == ref, "idempotent"


def test_never_started_is_absent(sched: LocalScheduler, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    refs = [
        JobRef("4242", "job", str(tmp_path / "empty"), token=token_for(tmp_path)),
        JobRef("4243", "job", str(tmp_path / "missing"), token=token_for(tmp_path)),
    ]
    statuses = sched.poll(refs)
    assert all(s.state is JobState.ABSENT and s.processes_gone for s in statuses.values())
    assert sched.find_by_label("job", str(tmp_path / "missing")) is None


def test_one_poll_for_many_jobs(sched: LocalScheduler, tmp_path: Path) -> None:
    refs = [sched.submit(spec(tmp_path / f"c{i}", ["sleep", "60"])) for i in range(5)]
    ok = sched.submit(spec(tmp_path / "ok", ["true"]))
    poll_until(sched, ok, lambda s: s.processes_gone is True)
    statuses = sched.poll([*refs, ok])
    assert [statuses[r].state for r in refs] == [JobState.RUNNING] * 5
    assert statuses[ok].state is JobState.SUCCEEDED


def test_find_on_probe_output_without_our_record_is_an_error_not_absent() -> None:
    with pytest.raises(SchedulerOutputError, match="unreadable marker probe"):
        found_job("garbage", "", "mqic-x", "/r/d", where="h")
