"""A server whose /tmp is read-only: liveness it cannot determine is never "gone".

The real local scheduler runs real jobs over a real sshd living in a private mount
namespace with /tmp read-only (``tests/infra/sshd_readonly_tmp.py``). The job
directories live outside /tmp, in the fixture's ``workdir``. Ground truth comes from
this machine's process table (the "server" is loopback).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_communicator.remote.job.marker_probe import marker_dir
from mqi_communicator.remote.protocol import GpuBinding, JobRef, JobSpec
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from mqi_communicator.remote.transport.ssh import SshTransport
from mqi_communicator.statemachine.jobs import JobState
from tests.infra.processes import group_alive, group_gone
from tests.infra.sshd import SshServer

pytestmark = pytest.mark.ssh

#: Polls per check: the verdict must hold every time, not just once.
POLLS = 5


def test_fixture_sessions_see_tmp_read_only(
    readonly_tmp_sshd: SshServer, readonly_tmp_transport: SshTransport, tmp_path: Path
) -> None:
    probe = f"/tmp/mqi-rotmp-{secrets.token_hex(4)}"
    r = readonly_tmp_transport.run(["touch", probe], timeout=30)
    assert r.exit_code != 0 and "Read-only file system" in r.stderr, r
    assert readonly_tmp_transport.run("mktemp", timeout=30).exit_code != 0
    assert not Path(probe).exists()
    # ... while the job directories outside /tmp are writable over it,
    target = readonly_tmp_sshd.workdir / f"w-{secrets.token_hex(4)}"
    assert readonly_tmp_transport.run(["touch", str(target)], timeout=30).exit_code == 0
    assert target.is_file()
    target.unlink()
    # ... and the host's own /tmp is untouched by the namespace.
    (tmp_path / "host-writes").write_text("ok")
    assert readonly_tmp_sshd.pid is not None
    assert os.readlink(f"/proc/{readonly_tmp_sshd.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")


@pytest.fixture
def jobs(readonly_tmp_sshd: SshServer) -> Iterator[list[int]]:
    """Process groups started by a test; SIGKILLed (and SIGCONTed) afterwards."""
    pgids: list[int] = []
    yield pgids
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
            os.killpg(pgid, signal.SIGCONT)


def _start(sched: LocalScheduler, server: SshServer, command: list[str], jobs: list[int]) -> JobRef:
    remote_dir = server.workdir / f"mqic_case_{secrets.token_hex(4)}_a1"
    remote_dir.mkdir()
    label = f"mqic-rotmp-{remote_dir.name}"
    spec = JobSpec(
        label, str(remote_dir), command, GpuBinding("rotmp/gpu0"), token=secrets.token_hex(16)
    )
    ref = sched.submit(spec)
    jobs.append(int(ref.job_id))
    return ref


def _wait_for_marker(ref: JobRef, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    path = Path(marker_dir(ref.remote_dir)) / name
    while not path.exists():
        assert time.monotonic() < deadline, f"no {name} marker in {ref.remote_dir}"
        time.sleep(0.02)


def test_live_jobs_are_never_reported_gone_when_tmp_is_read_only(
    readonly_tmp_sshd: SshServer, readonly_tmp_transport: SshTransport, jobs: list[int]
) -> None:
    """A running job, a stopped job and a finished one, polled in ONE batch.

    The probe needs no writable place (the old one needed a scratch file for ``kill``'s
    message and, without it, printed a pgid with no ``alive`` line): live jobs are RUNNING,
    never terminal nor ``processes_gone=True`` while their group lives.
    """
    sched = LocalScheduler(readonly_tmp_transport, timeout=30)
    running = _start(sched, readonly_tmp_sshd, ["sleep", "300"], jobs)
    stopped = _start(sched, readonly_tmp_sshd, ["sleep", "300"], jobs)
    finished = _start(sched, readonly_tmp_sshd, ["true"], jobs)
    os.killpg(int(stopped.job_id), signal.SIGSTOP)  # alive, but not scheduled
    _wait_for_marker(finished, "exit")
    assert group_gone(int(finished.job_id))
    for _ in range(POLLS):
        statuses = sched.poll([running, stopped, finished])
        assert set(statuses) == {running, stopped, finished}
        for ref in (running, stopped):
            status = statuses[ref]
            assert status.state is JobState.RUNNING, (ref.label, status)
            assert status.processes_gone is not True, (ref.label, status)
            assert group_alive(int(ref.job_id))  # the ground truth stayed "alive"
        done = statuses[finished]
        # Neither the exit marker nor the token scan needs /tmp: ended and provably gone.
        assert (done.state, done.exit_code) == (JobState.SUCCEEDED, 0), done
        assert done.processes_gone is True, done
