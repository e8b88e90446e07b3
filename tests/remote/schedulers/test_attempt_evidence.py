"""Evidence that belongs to the attempt, against real processes (local, Pueue, Slurm).

* A case that ships its own ``.mqi/`` (a stranger's pgid, a fake exit marker) is inert:
  nothing unrelated is killed, nothing completes from it.
* A descendant that detached (``setsid``) keeps the job alive until it is gone, and the
  kill ends it too.
* A probe that cannot tell liveness answers UNKNOWN for that job only, and the probe
  needs no writable place.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mqi_communicator.remote.job.markers import marker_dir, parse_probe, probe_snippet
from mqi_communicator.remote.protocol import (
    GpuBinding,
    JobRef,
    JobSpec,
    JobStatus,
    Scheduler,
    Transport,
)
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from mqi_communicator.remote.schedulers.pueue.scheduler import PueueScheduler
from mqi_communicator.remote.schedulers.slurm.scheduler import SlurmScheduler
from mqi_communicator.remote.transport.local import LocalTransport
from mqi_communicator.statemachine.decide import JobObservation, _ended
from mqi_communicator.statemachine.jobs import JobState
from tests.infra.processes import group_alive, group_gone
from tests.infra.pueue import PueueStandin
from tests.infra.slurm import SlurmCluster

from ..conftest import poll_until
from ..job.test_wrapper import token_for

#: Exits 0 at once, leaving a detached (own session) sleep that records its pid.
DETACH = "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >desc.pid; exit 0"


def spec(case: Path, command: str, gpu: GpuBinding | None = None) -> JobSpec:
    case.mkdir(parents=True, exist_ok=True)
    return JobSpec(
        label=f"mqic-{case.name}",
        remote_dir=str(case),
        command=["sh", "-c", command],
        gpu=gpu or GpuBinding("gpu0", pueue_group="gpu0"),
        token=token_for(case),
    )


def ended(status: JobStatus) -> bool:
    """Whether the engine would take ``status`` as "the job is over" (and free the GPU)."""
    obs = JobObservation(
        True, datetime.now(UTC), status.state, processes_gone=status.processes_gone
    )
    return _ended(obs)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def poll_condition(cond: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_pid_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def stranger() -> Iterator[int]:
    """An unrelated process group of the service user (its pgid)."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def forge(case: Path, label: str, pgid: int) -> None:
    """The case ships a ``.mqi/`` claiming the job ran and ended well (content, not ours)."""
    fake = case / ".mqi"
    (fake / "start").mkdir(parents=True)  # the old wrapper refused to run over this
    for name, value in {"label": label, "pgid": pgid, "started": 1, "exit": 0}.items():
        (fake / name).write_text(f"{value}\n")


def kill_leftovers(case: Path) -> None:
    pid_file = case / "desc.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def check_detached_descendant(sched: Scheduler, ref: JobRef, case: Path) -> None:
    """The job exits 0 leaving a setsid'd process: never ended while it lives; kill ends it."""
    try:
        status = poll_until(sched, ref, lambda s: s.state is JobState.SUCCEEDED, timeout=60)
        assert status.state is JobState.SUCCEEDED, status
        desc = int((case / "desc.pid").read_text())
        assert pid_alive(desc)
        again = sched.poll([ref])[ref]
        assert again.processes_gone is False and not ended(again), again
        sched.kill(ref)
        assert wait_pid_gone(desc), "the kill must reach the detached descendant"
        done = poll_until(sched, ref, lambda s: s.processes_gone is True, timeout=30)
        assert done.processes_gone is True and ended(done), done
    finally:
        kill_leftovers(case)


# -- local scheduler (this host, and the same host over the loopback sshd) ---------------


@pytest.fixture
def local_sched(job_transport: Transport) -> LocalScheduler:
    return LocalScheduler(job_transport, kill_grace_s=0.5, timeout=30)


def test_forged_pgid_in_the_case_is_never_signalled(
    local_sched: LocalScheduler, tmp_path: Path, stranger: int
) -> None:
    case = tmp_path / "forged"
    job = spec(case, "sleep 300")
    forge(case, job.label, stranger)
    ref = local_sched.submit(job)
    try:
        assert ref.job_id != str(stranger), "the job id came from the case's content"
        assert local_sched.poll([ref])[ref].state is JobState.RUNNING
        local_sched.kill(ref)
        status = poll_until(local_sched, ref, lambda s: s.processes_gone is True)
        assert status.state is JobState.KILLED and ended(status), status
        assert group_gone(int(ref.job_id))
        assert group_alive(stranger), "cancel killed an unrelated process group"
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(ref.job_id), signal.SIGKILL)


def test_detached_descendant_local(local_sched: LocalScheduler, tmp_path: Path) -> None:
    case = tmp_path / "detach"
    ref = local_sched.submit(spec(case, DETACH))
    check_detached_descendant(local_sched, ref, case)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_unknown_liveness_is_unknown_for_that_job_only(tmp_path: Path) -> None:
    """The server's grep cannot scan /proc: a job that ended is UNKNOWN, never gone."""
    sched = LocalScheduler(LocalTransport(), kill_grace_s=0.5, timeout=30)
    ended_dir, running_dir = tmp_path / "ended", tmp_path / "running"
    done = sched.submit(spec(ended_dir, DETACH))
    running = sched.submit(spec(running_dir, "sleep 300"))
    try:
        poll_until(sched, done, lambda s: s.state is JobState.SUCCEEDED)
        # Under load the detached child may not have left the job's process group yet (a
        # live group is definite evidence, not UNKNOWN): wait until setsid exec'd sleep.
        desc = int((ended_dir / "desc.pid").read_text())
        assert poll_condition(lambda: _comm(desc) == "sleep")
        # The wrapper writes its exit marker just before it exits: until it has, its
        # group is alive (definite evidence too). Wait for the group, not for time.
        pgid = int((Path(marker_dir(str(ended_dir))) / "pgid").read_text())
        assert group_gone(pgid, timeout=30)
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "grep").write_text("#!/bin/sh\necho 'grep: invalid option -- z' >&2\nexit 2\n")
        (fake / "grep").chmod(0o755)
        blind = LocalScheduler(
            LocalTransport(env={"PATH": f"{fake}:{os.environ['PATH']}"}), timeout=30
        )
        got = blind.poll([done, running])
        assert got[done].state is JobState.UNKNOWN and not ended(got[done]), got[done]
        assert got[done].processes_gone is not True
        # The other job's own evidence (its live group) still answers.
        assert got[running].state is JobState.RUNNING and got[running].processes_gone is False
    finally:
        for ref in (done, running):
            sched.kill(ref)
        for ref in (done, running):
            poll_until(sched, ref, lambda s: s.processes_gone is True)
        kill_leftovers(ended_dir)


def test_probe_needs_no_writable_place(tmp_path: Path) -> None:
    """The real probe, run where /tmp is read-only, still answers for every job."""
    sched = LocalScheduler(LocalTransport(), kill_grace_s=0.5, timeout=30)
    case = tmp_path / "alive"
    ref = sched.submit(spec(case, "sleep 300"))
    try:

        def job_started() -> bool:  # the wrapper and its child both carry the token
            info = parse_probe(LocalTransport().run(probe_snippet([str(case)]), timeout=30).stdout)
            procs = info[str(case)].token_procs if str(case) in info else None
            return procs is not None and procs >= 2

        assert poll_condition(job_started)
        # /tmp (which holds the case here) stays visible, but nothing can be written to it.
        readonly = (
            "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp"
            ' && ! touch /tmp/x 2>/dev/null && cd / && sh -c "$1"'
        )
        out = subprocess.run(
            ["unshare", "--mount", "sh", "-c", readonly, "probe", probe_snippet([str(case)])],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0 and "unshare" in out.stderr:
            pytest.skip(f"no private mount namespace here: {out.stderr.strip()}")
        info = parse_probe(out.stdout)[str(case)]
        assert info.group_alive is True, (info, out.stderr)
        assert info.token_procs is not None and info.token_procs >= 2, "wrapper + job"
        assert not list(tmp_path.glob("**/*.tmp*"))
    finally:
        sched.kill(ref)
        poll_until(sched, ref, lambda s: s.processes_gone is True)


# -- Pueue stand-in ------------------------------------------------------------------------


@pytest.fixture
def pueue_sched(pueue: PueueStandin, job_transport: Transport) -> PueueScheduler:
    pueue.cli("group", "add", "gpu0", "-p", "4", check=True)
    return PueueScheduler(job_transport, pueue.command, timeout=30, kill_grace_s=1)


def test_forged_exit_marker_does_not_complete_pueue(
    pueue_sched: PueueScheduler, tmp_path: Path
) -> None:
    case = tmp_path / "forged"
    job = spec(case, "touch ran; sleep 300")
    dead = subprocess.Popen(["true"])
    dead.wait()
    forge(case, job.label, dead.pid)
    (case / "result.dcm").write_text("stale result from an earlier run\n")
    ref = pueue_sched.submit(job)
    status = poll_until(pueue_sched, ref, lambda s: (case / "ran").exists())
    assert (case / "ran").exists(), f"the job never ran: {status}"
    status = pueue_sched.poll([ref])[ref]
    assert status.state is JobState.RUNNING and status.processes_gone is False, status
    pueue_sched.kill(ref)
    status = poll_until(pueue_sched, ref, lambda s: s.processes_gone is True)
    assert status.state is JobState.KILLED, status


def test_forged_pgid_is_never_signalled_pueue(
    pueue_sched: PueueScheduler, tmp_path: Path, stranger: int
) -> None:
    case = tmp_path / "forged"
    job = spec(case, "touch ran; sleep 300")
    forge(case, job.label, stranger)
    ref = pueue_sched.submit(job)
    poll_until(pueue_sched, ref, lambda s: (case / "ran").exists())
    pueue_sched.kill(ref)
    status = poll_until(pueue_sched, ref, lambda s: s.processes_gone is True)
    assert status.state is JobState.KILLED, status
    assert group_alive(stranger), "cancel killed an unrelated process group"


def test_detached_descendant_pueue(pueue_sched: PueueScheduler, tmp_path: Path) -> None:
    case = tmp_path / "detach"
    ref = pueue_sched.submit(spec(case, DETACH))
    check_detached_descendant(pueue_sched, ref, case)


# -- real Slurm (loopback cluster on this machine) -----------------------------------------


def test_forged_exit_marker_does_not_complete_slurm(slurm: SlurmCluster, tmp_path: Path) -> None:
    sched = SlurmScheduler(LocalTransport(env=slurm.env), kill_grace_s=1)
    case = tmp_path / "mqic_case_61_a1"
    job = spec(case, "touch ran; sleep 300", GpuBinding("g"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    forge(case, job.label, dead.pid)
    ref = sched.submit(job)
    poll_until(sched, ref, lambda s: (case / "ran").exists(), timeout=60)
    assert (case / "ran").exists(), "the job never ran"
    status = sched.poll([ref])[ref]
    assert status.state is JobState.RUNNING and not ended(status), status
    sched.kill(ref)
    # squeue may still say RUNNING (completing) after the processes are gone: wait for
    # Slurm's own end too, which must be the kill, never the forged exit 0.
    final = poll_until(
        sched, ref, lambda s: s.processes_gone is True and s.state is not JobState.RUNNING
    )
    assert final.state is JobState.KILLED, final


def test_detached_descendant_slurm(slurm: SlurmCluster, tmp_path: Path) -> None:
    sched = SlurmScheduler(LocalTransport(env=slurm.env), kill_grace_s=1)
    case = tmp_path / "mqic_case_60_a1"
    ref = sched.submit(spec(case, DETACH, GpuBinding("g")))
    check_detached_descendant(sched, ref, case)
