"""The start claim: ``markers.revoke_snippet`` against the real wrapper, as real processes.

A revoked directory never runs its command (the wrapper exits 0 and leaves no marker);
a revoke after the wrapper started fails, so the communicator keeps the GPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mqi_communicator.errors import RemoteCommandError
from mqi_communicator.remote.job import markers
from mqi_communicator.remote.protocol import GpuBinding, JobSpec, Transport
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from mqi_communicator.statemachine.jobs import JobState
from tests.infra.processes import group_gone

from ..conftest import poll_until
from .test_markers import HOSTILE_NAMES
from .test_wrapper import install, marker, mqi, start, token_for, wait_for


def revoke(transport: Transport, case: Path) -> int:
    return transport.run(markers.revoke_snippet(str(case)), timeout=30).exit_code


def canary_command(case: Path) -> list[str]:
    return ["sh", "-c", f"touch {case.parent}/canary"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_revoked_dir_never_runs_the_command(
    job_transport: Transport, tmp_path: Path, name: str
) -> None:
    case = tmp_path / name
    case.mkdir()
    assert revoke(job_transport, case) == 0
    install(case)
    r = subprocess.run(markers.wrapper_argv(str(case), "job", canary_command(case)), timeout=30)
    assert r.returncode == 0
    assert not (tmp_path / "canary").exists(), "the revoked command ran"
    for name_ in ("pgid", "started", "exit", "signal"):
        assert marker(case, name_) is None, name_
    log = (mqi(case) / "wrapper.log").read_text()
    assert "not running" in log and len(log.splitlines()) == 1, log
    assert revoke(job_transport, case) == 0, "a repeated revoke (after a crash) still holds"
    assert not list(tmp_path.glob("PWNED*")) and not list(case.glob("PWNED*"))


def test_revoke_before_the_directory_exists(job_transport: Transport, tmp_path: Path) -> None:
    """The submit may not even have uploaded yet: the claim is taken all the same."""
    case = tmp_path / "later"
    assert revoke(job_transport, case) == 0
    install(case)
    r = subprocess.run(markers.wrapper_argv(str(case), "job", canary_command(case)), timeout=30)
    assert r.returncode == 0 and not (tmp_path / "canary").exists()


def test_revoke_fails_once_the_wrapper_started(job_transport: Transport, tmp_path: Path) -> None:
    case = tmp_path / "case"
    proc = start(case, ["sleep", "60"])
    try:
        wait_for(mqi(case) / "pgid")
        assert revoke(job_transport, case) != 0
        assert proc.poll() is None, "the running job must not be disturbed"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert group_gone(proc.pid)
    assert revoke(job_transport, case) != 0, "an ended job's claim stays taken"


def test_second_start_in_the_same_dir_is_refused(tmp_path: Path) -> None:
    """A repeated start (e.g. Slurm requeue) runs nothing and leaves the markers alone."""
    case = tmp_path / "case"
    first = start(case, ["sh", "-c", "echo once >>count"])
    assert first.wait(timeout=30) == 0
    pgid = marker(case, "pgid")
    second = subprocess.run(
        markers.wrapper_argv(str(case), "job", ["sh", "-c", "echo twice >>count"]), timeout=30
    )
    assert second.returncode == 0
    assert (case / "count").read_text() == "once\n"
    assert marker(case, "pgid") == pgid and marker(case, "exit") == "0"


def _spec(case: Path, command: list[str]) -> JobSpec:
    case.mkdir(parents=True, exist_ok=True)
    return JobSpec(
        label="mqic-1-a1",
        remote_dir=str(case),
        command=command,
        gpu=GpuBinding(name="gpu0", cuda_devices="0"),
        token=token_for(case),
    )


def test_local_scheduler_end_to_end(job_transport: Transport, tmp_path: Path) -> None:
    sched = LocalScheduler(job_transport, kill_grace_s=0.5, timeout=30, start_wait_s=1.0)
    revoked = tmp_path / "revoked"
    revoked.mkdir()
    assert revoke(job_transport, revoked) == 0
    with pytest.raises(RemoteCommandError):
        sched.submit(_spec(revoked, canary_command(revoked)))
    assert not (tmp_path / "canary").exists()
    assert sched.find_by_label("mqic-1-a1", str(revoked)) is None

    case = tmp_path / "case"
    ref = sched.submit(_spec(case, ["sleep", "60"]))
    try:
        assert revoke(job_transport, case) != 0
        assert sched.poll([ref])[ref].state is JobState.RUNNING
        sched.kill(ref)
        status = poll_until(sched, ref, lambda s: s.processes_gone is True)
        assert status.state is JobState.KILLED, status
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(ref.job_id), signal.SIGKILL)
