"""Markers and kills count only for their own attempt (token), with real shells and processes.

Also: a job without a token (started before the upgrade) is still judged, by the old
rule, from its in-case markers; a new job is never started without a token.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mqi_communicator.errors import RemoteCommandError, SubmissionRejectedError
from mqi_communicator.remote.job import markers
from mqi_communicator.remote.protocol import GpuBinding, JobRef, JobSpec
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from mqi_communicator.remote.transport.local import LocalTransport
from mqi_communicator.statemachine.jobs import JobState
from tests.infra.processes import group_gone

from ..conftest import poll_until
from .test_wrapper import install, mqi, token_for


def spec(case: Path, command: list[str], token: str | None) -> JobSpec:
    case.mkdir(parents=True, exist_ok=True)
    return JobSpec("mqic-9-a1", str(case), command, GpuBinding("gpu0"), token=token)


@pytest.fixture
def sched() -> LocalScheduler:
    return LocalScheduler(LocalTransport(), kill_grace_s=0.5, timeout=30)


def test_install_refuses_another_attempts_marker_directory(tmp_path: Path) -> None:
    case = tmp_path / "case"
    install(case, token="a" * 32)
    script = markers.READ_TOKEN + markers.install_snippet(str(case), "job")
    again = subprocess.run(["sh", "-c", script], input=b"a" * 32 + b"\n", capture_output=True)
    assert again.returncode == 0, "the same attempt may install again"
    other = subprocess.run(["sh", "-c", script], input=b"b" * 32 + b"\n", capture_output=True)
    assert other.returncode != 0 and b"another attempt" in other.stderr
    assert (mqi(case) / "token").read_text() == "a" * 32 + "\n"
    empty = subprocess.run(["sh", "-c", script], input=b"", capture_output=True)
    assert empty.returncode != 0 and b"no attempt token" in empty.stderr


def test_a_spec_without_a_token_is_refused(sched: LocalScheduler, tmp_path: Path) -> None:
    with pytest.raises(SubmissionRejectedError, match="no attempt token"):
        sched.submit(spec(tmp_path / "c", ["true"], None))
    assert not mqi(tmp_path / "c").exists()


def test_another_token_is_neither_evidence_nor_killable(
    sched: LocalScheduler, tmp_path: Path
) -> None:
    case = tmp_path / "c"
    ref = sched.submit(spec(case, ["sleep", "300"], token_for(case)))
    try:
        impostor = JobRef(ref.job_id, ref.label, ref.remote_dir, token="f" * 32)
        status = sched.poll([impostor])[impostor]
        assert status.state is JobState.UNKNOWN and "another attempt" in status.detail
        with pytest.raises(RemoteCommandError, match="token"):
            sched.kill(impostor)
        assert sched.poll([ref])[ref].state is JobState.RUNNING, "nothing was signalled"
    finally:
        sched.kill(ref)
        assert poll_until(sched, ref, lambda s: s.processes_gone is True).processes_gone


def test_a_job_from_before_the_upgrade_is_judged_by_its_old_markers(
    sched: LocalScheduler, tmp_path: Path
) -> None:
    """No token: the in-case ``.mqi/`` the old wrapper wrote, and its process group."""
    case = tmp_path / "old"
    old = case / ".mqi"
    old.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        for name, value in {"label": "mqic-9-a1", "pgid": proc.pid, "started": 1}.items():
            (old / name).write_text(f"{value}\n")
        ref = JobRef(str(proc.pid), "mqic-9-a1", str(case))
        assert sched.poll([ref])[ref].state is JobState.RUNNING
        sched.kill(ref)  # the old rule: the group the in-case pgid marker names
        assert proc.wait(timeout=20) == -signal.SIGTERM
        assert group_gone(proc.pid)
        status = sched.poll([ref])[ref]
        assert status.state is JobState.KILLED and status.processes_gone is True
        # The same directory asked about with a token is not that job's evidence.
        tokened = JobRef(ref.job_id, ref.label, ref.remote_dir, token="c" * 32)
        assert sched.poll([tokened])[tokened].state is JobState.ABSENT
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_ref_without_a_directory_is_unknown(sched: LocalScheduler) -> None:
    ref = JobRef("1", "mqic-9-a1", "", token="d" * 32)
    assert sched.poll([ref])[ref].state is JobState.UNKNOWN


def test_old_markers_under_another_label_are_not_ours(
    sched: LocalScheduler, tmp_path: Path
) -> None:
    """No token: the label marker is the only owner check left; another job's exit 0
    and dead group say nothing about ours."""
    old = tmp_path / "old" / ".mqi"
    old.mkdir(parents=True)
    dead = subprocess.Popen(["true"], start_new_session=True)
    dead.wait()
    for name, value in {"label": "mqic-8-a1", "pgid": dead.pid, "started": 1, "exit": 0}.items():
        (old / name).write_text(f"{value}\n")
    ref = JobRef(str(dead.pid), "mqic-9-a1", str(tmp_path / "old"))
    status = sched.poll([ref])[ref]
    assert status.state is JobState.UNKNOWN and status.processes_gone is None, status
