"""SlurmScheduler against the REAL loopback Slurm, through LocalTransport and SshTransport.

Order matters in this module: the ``--time`` job is submitted when the module starts and
checked near the end (Slurm's time limits have a one-minute granularity and are checked
every 30 s); the restart/aging test runs FIRST, well inside the job's minute, so the short MinJobAge
it sets cannot purge the time-limited job's record;
the test that wipes the controller's state (``slurmctld -c``) runs last because slurm
then kills every running job.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mqi_communicator.errors import SchedulerUnavailableError, SubmissionRejectedError
from mqi_communicator.remote.job.markers import marker_dir
from mqi_communicator.remote.protocol import (
    CommandResult,
    GpuBinding,
    JobRef,
    JobSpec,
    JobStatus,
    Transport,
)
from mqi_communicator.remote.schedulers.slurm.commands import JOB_ID_FILE
from mqi_communicator.remote.schedulers.slurm.scheduler import SlurmScheduler
from mqi_communicator.remote.transport.local import LocalTransport
from mqi_communicator.statemachine.jobs import JobState
from tests.infra.hooked import DelegatingTransport
from tests.infra.processes import group_alive
from tests.infra.slurm import SlurmCluster

from ..job.test_wrapper import token_for

pytestmark = pytest.mark.slurm

ALIVE = {JobState.QUEUED, JobState.RUNNING}
GPU = GpuBinding(name="gpu0")
HOSTILE = "we ird 'q\" $(touch PWNED) `touch PWNED2`; %j %% \\b ünï"


class CountingTransport(DelegatingTransport):
    """A real transport that counts ``run`` calls (delegates everything)."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.calls = 0

    def run(
        self, command: Sequence[str] | str, *, timeout: float, stdin: bytes | None = None
    ) -> CommandResult:
        self.calls += 1
        return super().run(command, timeout=timeout, stdin=stdin)


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest, slurm: SlurmCluster) -> Iterator[Transport]:
    """LocalTransport, or SshTransport to the loopback sshd; SLURM_CONF via ``env``."""
    if request.param == "local":
        yield LocalTransport(env=slurm.env)
        return
    sshd = request.getfixturevalue("sshd")
    sshd.start()
    t = sshd.transport(env=slurm.env)
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def local(slurm: SlurmCluster) -> LocalTransport:
    return LocalTransport(env=slurm.env)


def case_dir(base: Path, name: str) -> str:
    path = base / name
    path.mkdir(parents=True)
    return str(path)


def spec(remote_dir: str, label: str, script: str, gpu: GpuBinding = GPU, **kw: object) -> JobSpec:
    kw.setdefault("token", token_for(Path(remote_dir)))
    return JobSpec(label=label, remote_dir=remote_dir, command=["sh", "-c", script], gpu=gpu, **kw)  # type: ignore[arg-type]


def ref_of(job_id: str, label: str, remote_dir: str) -> JobRef:
    """A ref to the job of ``remote_dir`` (its attempt token), as the engine builds it."""
    return JobRef(job_id, label, remote_dir, token=token_for(Path(remote_dir)))


def wait_until(
    sched: SlurmScheduler,
    ref: JobRef,
    done: Callable[[JobStatus], bool],
    timeout: float = 60.0,
) -> JobStatus:
    """Poll until ``done(status)``; a generous deadline, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while True:
        status = sched.poll([ref])[ref]
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{ref} stuck at {status}")
        time.sleep(0.2)


def finished(status: JobStatus) -> bool:
    return status.state not in ALIVE and status.state is not JobState.UNKNOWN


def started(status: JobStatus) -> bool:
    # started_at: the wrapper wrote its pgid and start markers (a process with the token
    # is alive a moment earlier, from the wrapper's re-exec on).
    return (
        status.state is JobState.RUNNING
        and status.processes_gone is False
        and status.started_at is not None
    )


def pgid_of(remote_dir: str) -> int:
    return int((Path(marker_dir(remote_dir)) / "pgid").read_text().strip())


@pytest.fixture(scope="module")
def timeout_job(
    slurm: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SlurmScheduler, JobRef]:
    """A job with a one-minute limit, submitted when the module starts."""
    sched = SlurmScheduler(LocalTransport(env=slurm.env))
    d = case_dir(tmp_path_factory.mktemp("slurm-timeout"), "mqic_case_900_a1")
    ref = sched.submit(spec(d, "mqic_case_900_a1", "sleep 600", time_limit_s=60))
    return sched, ref


@pytest.fixture(autouse=True, scope="module")
def _start_timeout_job_early(timeout_job: tuple[SlurmScheduler, JobRef]) -> None:
    """Submit the time-limited job before anything else runs."""


def test_controller_restart_and_aging(
    slurm: SlurmCluster, local: LocalTransport, tmp_path: Path
) -> None:
    sched = SlurmScheduler(local)
    ok_dir = case_dir(tmp_path, "mqic_case_30_a1")
    ok = sched.submit(spec(ok_dir, "mqic_case_30_a1", "echo fine"))
    bad = sched.submit(spec(case_dir(tmp_path, "mqic_case_31_a1"), "mqic_case_31_a1", "exit 5"))
    assert wait_until(sched, ok, finished).state is JobState.SUCCEEDED
    assert wait_until(sched, bad, finished).state is JobState.FAILED

    slurm.restart_controller(clean=False)  # state kept: slurm still answers
    kept = sched.poll([ok, bad])
    assert "slurm COMPLETED" in kept[ok].detail
    assert (kept[bad].state, kept[bad].exit_code) == (JobState.FAILED, 5)

    # MinJobAge: finished jobs age out of the controller; the markers decide
    slurm.set_min_job_age(2)
    try:
        deadline = time.monotonic() + 90
        while slurm.client("squeue", "-h", "-t", "all", "-j", ok.job_id).returncode == 0:
            assert time.monotonic() < deadline, "job never aged out"
            time.sleep(0.5)
        for ref in (ok, bad):  # one id at a time: squeue exits 1 "Invalid job id specified"
            alone = sched.poll([ref])[ref]
            assert "not known to slurm" in alone.detail
            assert alone.processes_gone is True
        both = sched.poll([ok, bad])  # several unknown ids: squeue prints nothing, exit 0
        assert both[ok].state is JobState.SUCCEEDED
        assert (both[bad].state, both[bad].exit_code) == (JobState.FAILED, 5)
        assert "not known to slurm" in both[bad].detail
        # the id is recovered from the file the job wrote in its case directory
        assert SlurmScheduler(local).find_by_label(ok.label, ok_dir) == ok
    finally:
        slurm.set_min_job_age(300)


def test_submit_poll_to_success(transport: Transport, tmp_path: Path) -> None:
    sched = SlurmScheduler(transport, partition="debug")
    d = case_dir(tmp_path, "mqic_case_1_a1")
    ref = sched.submit(spec(d, "mqic_case_1_a1", "echo hello > out.txt"))
    assert ref.job_id.isdigit()
    assert ref.label == "mqic_case_1_a1"
    status = wait_until(sched, ref, finished)
    assert status.state is JobState.SUCCEEDED, status
    assert status.exit_code == 0
    assert status.processes_gone is True
    assert "slurm COMPLETED" in status.detail
    assert (Path(d) / "out.txt").read_text() == "hello\n"
    assert (Path(marker_dir(d)) / f"slurm-{ref.job_id}.out").exists()


def test_exit_3_is_failed_with_code_and_log_tail(transport: Transport, tmp_path: Path) -> None:
    sched = SlurmScheduler(transport)
    d = case_dir(tmp_path, "mqic_case_2_a1")
    ref = sched.submit(spec(d, "mqic_case_2_a1", "echo 'dose grid exploded' >&2; exit 3"))
    status = wait_until(sched, ref, finished)
    assert status.state is JobState.FAILED, status
    assert status.exit_code == 3
    assert "dose grid exploded" in status.log_tail


def test_scancel_is_confirmed_by_a_later_poll(transport: Transport, tmp_path: Path) -> None:
    sched = SlurmScheduler(transport)
    d = case_dir(tmp_path, "mqic_case_3_a1")
    ref = sched.submit(spec(d, "mqic_case_3_a1", "sleep 300 & sleep 301 & wait"))
    wait_until(sched, ref, started)
    pgid = pgid_of(d)
    assert group_alive(pgid)
    sched.kill(ref)
    status = wait_until(sched, ref, finished)
    assert status.state is JobState.KILLED, status
    assert status.processes_gone is True
    assert not group_alive(pgid)


@pytest.mark.parametrize("hostile", [HOSTILE, HOSTILE.replace("\\", "")], ids=["bs", "pct"])
def test_hostile_remote_dir(transport: Transport, tmp_path: Path, hostile: str) -> None:
    sched = SlurmScheduler(transport)
    d = case_dir(tmp_path / hostile, "mqic_case_4_a1")
    ref = sched.submit(spec(d, "mqic_case_4_a1", "pwd > where.txt"))
    status = wait_until(sched, ref, finished)
    assert status.state is JobState.SUCCEEDED, status
    assert (Path(d) / "where.txt").read_text() == d + "\n"
    assert (Path(marker_dir(d)) / JOB_ID_FILE).read_text() == ref.job_id + "\n"
    # slurm's own log: only where its filename patterns allow (no backslash)
    assert (Path(marker_dir(d)) / f"slurm-{ref.job_id}.out").exists() is ("\\" not in d)
    assert not list(tmp_path.rglob("PWNED*"))
    assert not Path("PWNED").exists()
    again = SlurmScheduler(transport).find_by_label("mqic_case_4_a1", d)
    assert again == ref


def test_find_by_label_after_a_crash(transport: Transport, tmp_path: Path) -> None:
    d = case_dir(tmp_path, "mqic_case_5_a1")
    ref = SlurmScheduler(transport).submit(spec(d, "mqic_case_5_a1", "sleep 300"))
    fresh = SlurmScheduler(transport)  # a new process after a crash knows nothing
    assert fresh.find_by_label("mqic_case_5_a1", d) == ref
    assert fresh.find_by_label("mqic_case_5_a2", case_dir(tmp_path, "mqic_case_5_a2")) is None
    fresh.kill(ref)
    assert wait_until(fresh, ref, finished).state is JobState.KILLED


def test_poll_of_50_jobs_is_one_remote_command(
    transport: Transport, local: LocalTransport, tmp_path: Path
) -> None:
    # --hold keeps them PENDING: 50 real jobs, nothing to run on the 2 CPUs. Submitted
    # locally (one command each) to keep the SSH variant short; polled via `transport`.
    submitting = CountingTransport(local)
    held = SlurmScheduler(submitting, extra_sbatch_args=("--hold",))
    refs = [
        held.submit(spec(case_dir(tmp_path, f"mqic_case_{i}_a1"), f"mqic_case_{i}_a1", "true"))
        for i in range(100, 150)
    ]
    assert submitting.calls == 50
    counting = CountingTransport(transport)
    sched = SlurmScheduler(counting)
    statuses = sched.poll(refs)
    assert counting.calls == 1
    assert {s.state for s in statuses.values()} == {JobState.QUEUED}
    assert all(s.processes_gone is True for s in statuses.values())
    for ref in refs[:3]:
        sched.kill(ref)
    counting.calls = 0
    statuses = sched.poll(refs)
    assert counting.calls == 1
    assert [statuses[r].state for r in refs[:4]] == [JobState.KILLED] * 3 + [JobState.QUEUED]
    cancel = local.run(["scancel", *(r.job_id for r in refs[3:])], timeout=60)
    assert cancel.exit_code == 0, cancel


def test_gres_gpu_job_sees_cuda_visible_devices(local: LocalTransport, tmp_path: Path) -> None:
    show = 'echo "CVD=${CUDA_VISIBLE_DEVICES-unset}"'
    by_binding = SlurmScheduler(local)
    d1 = case_dir(tmp_path, "mqic_case_6_a1")
    r1 = by_binding.submit(spec(d1, "mqic_case_6_a1", show, GpuBinding("g", slurm_gres="gpu:2")))
    by_default = SlurmScheduler(local, default_gres="gpu:1")
    d2 = case_dir(tmp_path, "mqic_case_7_a1")
    r2 = by_default.submit(spec(d2, "mqic_case_7_a1", show))
    d3 = case_dir(tmp_path, "mqic_case_8_a1")
    r3 = by_binding.submit(spec(d3, "mqic_case_8_a1", show))
    for sched, ref in ((by_binding, r1), (by_default, r2), (by_binding, r3)):
        assert wait_until(sched, ref, finished).state is JobState.SUCCEEDED
    logs = [(Path(marker_dir(d)) / "job.log").read_text().strip() for d in (d1, d2, d3)]
    cvd = [line.removeprefix("CVD=") for line in logs]
    assert len(cvd[0].split(",")) == 2, logs
    assert cvd[1].isdigit(), logs
    assert cvd[2] == "unset", logs


def test_forgotten_id_and_foreign_name_let_markers_decide(
    local: LocalTransport, tmp_path: Path
) -> None:
    sched = SlurmScheduler(local)
    da = case_dir(tmp_path, "mqic_case_10_a1")
    a = sched.submit(spec(da, "mqic_case_10_a1", "sleep 300"))
    db = case_dir(tmp_path, "mqic_case_11_a1")
    b = sched.submit(spec(db, "mqic_case_11_a1", "exit 0"))
    dc = case_dir(tmp_path, "mqic_case_12_a1")
    c = sched.submit(spec(dc, "mqic_case_12_a1", "echo broken; exit 7"))
    wait_until(sched, a, started)
    wait_until(sched, b, finished)
    wait_until(sched, c, finished)
    forgotten_alive = ref_of("987654", a.label, a.remote_dir)  # slurm never heard of it
    foreign_ok = ref_of(a.job_id, b.label, b.remote_dir)  # id now names another job
    foreign_bad = ref_of(a.job_id, c.label, c.remote_dir)
    nothing = ref_of(a.job_id, "mqic_case_13_a1", str(tmp_path / "mqic_case_13_a1"))
    got = sched.poll([forgotten_alive, foreign_ok, foreign_bad, nothing])
    assert got[forgotten_alive].state is JobState.RUNNING
    assert got[forgotten_alive].processes_gone is False
    assert got[foreign_ok].state is JobState.SUCCEEDED
    assert (got[foreign_bad].state, got[foreign_bad].exit_code) == (JobState.FAILED, 7)
    assert "broken" in got[foreign_bad].log_tail
    assert got[nothing].state is JobState.ABSENT
    # kill with the wrong label must not cancel job a (scancel --name)
    sched.kill(ref_of(a.job_id, "mqic_case_11_a1", db))
    assert sched.poll([a])[a].state is JobState.RUNNING
    # slurm does not know this id, the markers say the wrapper is ours and running: the
    # kill signals the wrapper group itself
    pgid = pgid_of(da)
    sched.kill(forgotten_alive)
    status = wait_until(sched, forgotten_alive, lambda s: finished(s) and bool(s.processes_gone))
    assert status.state is JobState.KILLED, status
    assert not group_alive(pgid)
    assert wait_until(sched, a, finished).state is JobState.FAILED  # its batch script got TERM


def test_submit_is_safe_to_repeat(local: LocalTransport, tmp_path: Path) -> None:
    sched = SlurmScheduler(local, extra_sbatch_args=("--hold",))
    d = case_dir(tmp_path, "mqic_case_40_a1")
    job = spec(d, "mqic_case_40_a1", "true")
    ref = sched.submit(job)
    assert sched.submit(job) == ref  # the reply was lost, the engine asks again
    # sbatch went through but the command died before recording the id
    (Path(marker_dir(d)) / "slurm_submitted").unlink()
    assert sched.submit(job) == ref
    names = local.run(["squeue", "-h", "-t", "all", "-n", job.label, "-o", "%i"], timeout=60)
    assert names.stdout.split() == [ref.job_id]
    # the command died after taking the lock but before sbatch: submit goes ahead
    d2 = case_dir(tmp_path, "mqic_case_41_a1")
    (Path(marker_dir(d2)) / "slurm_submit.lock").mkdir(parents=True)
    ref2 = sched.submit(spec(d2, "mqic_case_41_a1", "true"))
    assert ref2.job_id != ref.job_id
    assert sched.poll([ref2])[ref2].state is JobState.QUEUED
    for r in (ref, ref2):
        sched.kill(r)
        assert wait_until(sched, r, finished).state is JobState.KILLED


def test_rejected_submission(local: LocalTransport, tmp_path: Path) -> None:
    sched = SlurmScheduler(local)
    d = case_dir(tmp_path, "mqic_case_20_a1")
    with pytest.raises(SubmissionRejectedError) as err:
        sched.submit(spec(d, "mqic_case_20_a1", "true", GpuBinding("g", slurm_partition="nope")))
    assert "partition" in err.value.stderr.lower()
    with pytest.raises(SubmissionRejectedError):
        sched.submit(spec(d, "mqic_case_20_a1", "true", GpuBinding("g", slurm_gres="gpu:99")))


def test_unreachable_controller(slurm: SlurmCluster, tmp_path: Path) -> None:
    # A real client pointed at a port nobody listens on.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    conf = slurm.slurm_conf.read_text().replace(
        f"SlurmctldPort={slurm.ctld_port}", f"SlurmctldPort={dead_port}"
    )
    dead = tmp_path / "dead.conf"
    dead.write_text(conf + "MessageTimeout=1\n")
    shutil.copy(slurm.root / "gres.conf", tmp_path / "gres.conf")
    sched = SlurmScheduler(LocalTransport(env={"SLURM_CONF": str(dead)}))
    d = case_dir(tmp_path, "mqic_case_21_a1")
    with pytest.raises(SchedulerUnavailableError):
        sched.submit(spec(d, "mqic_case_21_a1", "true"))
    ref = ref_of("1", "mqic_case_21_a1", d)
    with pytest.raises(SchedulerUnavailableError):
        sched.poll([ref])
    with pytest.raises(SchedulerUnavailableError):
        sched.kill(ref)
    with pytest.raises(SchedulerUnavailableError):
        sched.find_by_label(ref.label, d)


@pytest.mark.slow
def test_time_limit_is_timeout_failed(timeout_job: tuple[SlurmScheduler, JobRef]) -> None:
    sched, ref = timeout_job
    status = wait_until(sched, ref, finished, timeout=150)
    assert status.state is JobState.FAILED, status
    assert "TIMEOUT" in status.detail
    # slurm sends TERM, then KILL after KillWait: the group may outlive the state change
    status = wait_until(sched, ref, lambda s: s.processes_gone is True)
    assert status.state is JobState.FAILED, status
    assert status.exit_code == 143  # the wrapper's TERM exit


@pytest.mark.slow
def test_state_loss_kills_orphans_and_markers_see_it(
    slurm: SlurmCluster, local: LocalTransport, tmp_path: Path
) -> None:
    sched = SlurmScheduler(local)
    ok_dir = case_dir(tmp_path, "mqic_case_34_a1")
    ok = sched.submit(spec(ok_dir, "mqic_case_34_a1", "echo fine"))
    assert wait_until(sched, ok, finished).state is JobState.SUCCEEDED
    # state wiped while a job runs: slurm kills the orphan; the markers see it end
    run_dir = case_dir(tmp_path, "mqic_case_33_a1")
    running = sched.submit(spec(run_dir, "mqic_case_33_a1", "sleep 300"))
    wait_until(sched, running, started)
    pgid = pgid_of(run_dir)
    slurm.restart_controller(clean=True)
    gone = wait_until(sched, running, lambda s: finished(s) and bool(s.processes_gone))
    # Slurm SIGKILLs the step's processes in no fixed order: if the wrapper outlives its
    # child by a moment it records the child's 137 (128 + SIGKILL) before dying itself.
    assert gone.state is JobState.KILLED or (
        gone.state is JobState.FAILED and gone.exit_code == 137
    ), gone
    assert "not known to slurm" in gone.detail
    assert not group_alive(pgid)
    after = sched.poll([ok])[ok]
    assert after.state is JobState.SUCCEEDED
    assert "not known to slurm" in after.detail

    # a job id that now names another job: the name tells them apart
    new = sched.submit(spec(case_dir(tmp_path, "mqic_case_32_a1"), "mqic_case_32_a1", "true"))
    reused = ref_of(new.job_id, ok.label, ok.remote_dir)
    assert sched.poll([reused])[reused].state is JobState.SUCCEEDED
    assert wait_until(sched, new, finished).state is JobState.SUCCEEDED
