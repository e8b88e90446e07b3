"""remote_retention on a real engine (LocalTransport, local scheduler, real processes)."""

from __future__ import annotations

from pathlib import Path

from mqi_communicator import CaseState

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
