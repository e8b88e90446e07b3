"""remote_retention on a real engine (LocalTransport, local scheduler, real processes)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mqi_communicator import CaseState, GpuState
from mqi_communicator.engine.build import build_hosts
from mqi_communicator.engine.runtime import HostRuntime
from tests.infra.hooked import HookedTransport
from tests.infra.processes import group_alive

from .conftest import Workspace, status_is, tick_until


def _remote(ws: Workspace, remote_dir: str | None) -> tuple[Path, Path]:
    assert remote_dir is not None
    folder = Path(remote_dir)
    assert folder.parent == ws.remote_base
    return folder, Path(f"{remote_dir}.mqi")


def test_keep_failed_removes_completed_folders_and_keeps_failed_ones(ws: Workspace) -> None:
    # The default policy, keep_failed; no grace, so the test need not wait 10 minutes.
    comm = ws.communicator(ws.config(engine={"remote_retention_grace_s": 0}))
    ws.drop_case("good")
    tick_until(comm, lambda: len(comm.cases()) == 1, "registered")
    good = comm.cases()[0]
    tick_until(comm, status_is(comm, good.id, CaseState.COMPLETED), "completed")
    folder, markers = _remote(ws, comm.case(good.id).remote_dir)
    tick_until(comm, lambda: not folder.exists() and not markers.exists(), "removed")
    assert (ws.results / "good" / "dose.txt").exists()  # only after verified retrieval
    assert any("removed" in t.detail for t in comm.history(case_id=good.id))

    fail = ws.communicator(ws.config(command="exit 3", engine={"remote_retention_grace_s": 0}))
    comm.close()
    ws.drop_case("bad")
    tick_until(fail, lambda: len(fail.cases()) == 2, "registered")
    bad = fail.cases()[1]
    tick_until(fail, status_is(fail, bad.id, CaseState.FAILED), "failed")
    for _ in range(5):
        fail.tick()
    folder, markers = _remote(ws, fail.case(bad.id).remote_dir)
    assert folder.exists() and (markers / "job.log").exists()  # kept for diagnosis
    assert fail.case(bad.id).remote_done == str(folder)


def test_delete_removes_failed_folders_too(ws: Workspace) -> None:
    comm = ws.communicator(
        ws.config(
            command="exit 3", engine={"remote_retention": "delete", "remote_retention_grace_s": 0}
        )
    )
    ws.drop_case("bad")
    tick_until(comm, lambda: len(comm.cases()) == 1, "registered")
    bad = comm.cases()[0]
    tick_until(comm, status_is(comm, bad.id, CaseState.FAILED), "failed")
    folder, markers = _remote(ws, comm.case(bad.id).remote_dir)
    tick_until(comm, lambda: not folder.exists() and not markers.exists(), "removed")


def test_keep_removes_nothing(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(engine={"remote_retention": "keep"}))
    ws.drop_case("good")
    tick_until(comm, lambda: len(comm.cases()) == 1, "registered")
    good = comm.cases()[0]
    tick_until(comm, status_is(comm, good.id, CaseState.COMPLETED), "completed")
    for _ in range(5):
        comm.tick()
    folder, markers = _remote(ws, comm.case(good.id).remote_dir)
    assert folder.exists() and markers.exists()


def test_a_zombie_gpu_keeps_its_failed_cases_folder_until_released_on_evidence(
    ws: Workspace,
) -> None:
    """``delete`` with no grace, yet the folder of a job that may still run is kept.

    The job ignores SIGTERM and the scheduler's SIGKILL comes only after 10 minutes, so
    the kill is never confirmed: the case fails and its GPU becomes a zombie while the
    job keeps running in that folder. Only the job's end (evidence) releases the GPU,
    and only then is the folder removed.
    """
    config = ws.config(
        command="trap '' TERM; sleep 300",
        engine={
            "job_timeout_s": 1,
            "kill_confirm_s": 0.5,
            "remote_retention": "delete",
            "remote_retention_grace_s": 0,
        },
        scheduler={"kill_grace_s": 600},
    )
    comm = ws.communicator(config)
    ws.drop_case("stuck")
    tick_until(comm, lambda: bool(comm.cases()), "registered")
    case = comm.cases()[0]
    tick_until(comm, status_is(comm, case.id, CaseState.FAILED), "failed on an unconfirmed kill")
    case = comm.case(case.id)
    (gpu,) = comm.gpus()
    assert gpu.status is GpuState.ZOMBIE and gpu.job_id == case.job_id
    assert case.job_id is not None
    pgid = int(case.job_id)
    folder, markers = _remote(ws, case.remote_dir)
    for _ in range(3):
        comm.tick()
    comm.close()
    # A fresh engine sweeps at its first tick: the zombie must still hold the folder.
    again = ws.communicator(config)
    for _ in range(3):
        again.tick()
    assert group_alive(pgid), "the stray job must still run for this test to mean anything"
    assert again.gpus()[0].status is GpuState.ZOMBIE
    assert folder.exists() and (markers / "job.log").exists()
    assert again.case(case.id).remote_done is None  # deferred, not settled as kept
    os.killpg(pgid, signal.SIGKILL)  # the job ends: the zombie is released on evidence
    tick_until(again, lambda: again.gpus()[0].status is GpuState.AVAILABLE, "released")
    tick_until(again, lambda: not folder.exists() and not markers.exists(), "removed")
    assert again.case(case.id).remote_done == str(folder)


def test_a_removal_that_hangs_stalls_no_other_case(ws: Workspace) -> None:
    """The far side's ``rm`` of an ended case's folder runs beside the tick: while it
    hangs, the next case is claimed, run and retrieved (on the code before, the removal
    ran in the tick, and no tick ended until it did)."""
    config = ws.config(gpus=2, engine={"remote_retention_grace_s": 0})
    entered, gate = threading.Event(), threading.Event()

    def before_remove(remote_dir: str) -> None:
        if Path(remote_dir).name.startswith("mqic_case_1_"):
            entered.set()
            assert gate.wait(120)

    (real,) = build_hosts(config).values()
    hooked = HookedTransport(real.transport, lambda *_: None, before_remove=before_remove)
    host = HostRuntime(real.name, hooked, real.scheduler, real.remote_base)
    comm = ws.communicator(config, hosts={real.name: host}, watch=False)
    first = comm.register(ws.drop_case("first"))
    # The reconciler's own ticks: Communicator.tick waits for the jobs beside it to end.
    ticks = comm.reconciler.tick
    try:
        _until(ticks, status_is(comm, first.id, CaseState.COMPLETED), "first completed")
        _until(ticks, entered.is_set, "the first case's removal started (and hangs)")
        second = comm.register(ws.drop_case("second"))
        _until(ticks, status_is(comm, second.id, CaseState.COMPLETED), "second completed")
        folder, markers = _remote(ws, comm.case(first.id).remote_dir)
        assert folder.exists() and markers.exists() and comm.case(first.id).remote_done is None
    finally:
        gate.set()
    tick_until(comm, lambda: not folder.exists() and not markers.exists(), "first removed")
    tick_until(comm, lambda: comm.case(first.id).remote_done is not None, "first settled")


def _until(tick: Callable[[], object], cond: Callable[[], bool], what: str) -> None:
    """Tick until ``cond`` holds, within a generous bound (a wait, not a speed test)."""
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        tick()
        time.sleep(0.05)
