"""A folder dropped again after its case ended is a new case; the same folder left in place is not.

Real engine (LocalTransport, local scheduler, real processes) on SQLite and PostgreSQL,
with the engine restarted in between: nothing of this lives only in memory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mqi_communicator import CaseState, Communicator
from mqi_communicator.errors import InvalidTransitionError
from mqi_communicator.migrations.api import upgrade

from .conftest import Workspace, status_is, tick_until


def _engine(ws: Workspace, db_url: str, **engine: object) -> Communicator:
    return ws.communicator(ws.config(database_url=db_url, engine=engine))


def _settle(comm: Communicator, rounds: int = 3) -> None:
    """Let intake look at the watch folder a few times (scan, settle, register)."""
    intake = comm.intake
    assert intake is not None
    comm.tick()  # starts intake (observer and first scan) as `run` does
    for _ in range(rounds):
        intake.scan()
        tick_until(comm, lambda: not intake.pending(), "intake settled")
        comm.tick()


def _stamp(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / ".mqi-result.json").read_text())
    return data


def test_redrop_after_the_case_ended_is_a_new_case_and_keeps_the_old_results(
    ws: Workspace, db_url: str
) -> None:
    upgrade(db_url)
    comm = _engine(ws, db_url)
    ws.drop_case("patient 01", {"plan.dcm": "plan A"})
    tick_until(comm, lambda: len(comm.cases()) == 1, "registered")
    first = comm.cases()[0]
    tick_until(comm, status_is(comm, first.id, CaseState.COMPLETED), "first completed")
    (ws.results / "patient 01" / "mine.txt").write_text("operator notes")

    # The same folder left in place: not registered again, now or after a restart.
    _settle(comm)
    assert [c.id for c in comm.cases()] == [first.id]
    comm.close()
    comm = _engine(ws, db_url)
    _settle(comm)
    assert [c.id for c in comm.cases()] == [first.id]

    # Dropped again with other content (the engine is running): a new case.
    shutil.rmtree(ws.watch / "patient 01")
    ws.drop_case("patient 01", {"plan.dcm": "plan B, corrected"})
    tick_until(comm, lambda: len(comm.cases()) == 2, "the re-drop registered")
    second = comm.cases()[1]
    assert second.path == first.path and second.id != first.id
    assert second.fingerprint is not None and second.fingerprint != comm.case(first.id).fingerprint
    tick_until(comm, status_is(comm, second.id, CaseState.COMPLETED), "second completed")

    # The old results are untouched; the new ones went to a folder of their own.
    old = ws.results / "patient 01"
    assert _stamp(old)["case_id"] == first.id
    assert (old / "mine.txt").read_text() == "operator notes"
    new = ws.results / f"patient 01.case{second.id}"
    assert _stamp(new)["case_id"] == second.id and (new / "dose.txt").exists()
    assert not (ws.results / ".mqi-previous").exists()

    # The superseded case cannot run again (its content is gone); the new one is the case.
    with pytest.raises(InvalidTransitionError, match=f"dropped again as case {second.id}"):
        comm.retry(first.id)

    # After a restart, still two cases and nothing new.
    comm.close()
    comm = _engine(ws, db_url)
    _settle(comm)
    assert [c.id for c in comm.cases()] == [first.id, second.id]


def test_redrop_while_the_engine_was_down_is_found_at_start(ws: Workspace, db_url: str) -> None:
    upgrade(db_url)
    comm = _engine(ws, db_url)
    ws.drop_case("p2", {"plan.dcm": "one"})
    tick_until(comm, lambda: len(comm.cases()) == 1, "registered")
    first = comm.cases()[0]
    tick_until(comm, status_is(comm, first.id, CaseState.COMPLETED), "completed")
    comm.close()
    # Replaced while no engine ran: only the database and the folder can tell.
    (ws.watch / "p2" / "plan.dcm").write_text("two, a longer plan")
    comm = _engine(ws, db_url)
    tick_until(comm, lambda: len(comm.cases()) == 2, "the re-drop registered at start")
    assert comm.cases()[1].path == first.path


def test_a_live_case_blocks_a_second_live_case_of_the_same_folder(
    ws: Workspace, db_url: str
) -> None:
    """The database itself refuses two live cases of one path (uq_cases_live_path)."""
    upgrade(db_url)
    comm = _engine(ws, db_url)
    folder = ws.drop_case("p3")
    first = comm.register(folder)
    assert first.status is CaseState.SUBMITTED
    # A caller claiming the live case ended (a race) still cannot add a second live row.
    again, created = comm.store.register_case(
        str(folder.absolute()), first.created_at, fingerprint="x", after=first.id
    )
    assert not created and again.id == first.id
    assert len(comm.cases()) == 1
