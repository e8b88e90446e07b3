"""One case's local error stays with that case; the others keep flowing (issue #10).

Real parts: SQLite, the local transport and scheduler, real jobs, and the real
filesystem raising the errors (no injected exceptions):

- a case whose every possible results folder is already taken by folders that are not
  its own (a results folder is never replaced), so placing its results raises
  FileExistsError, until an operator clears them;
- a results folder that is a read-only bind mount (EROFS), which even root cannot write.

On the code before the fault boundary, the first OSError escaped ``retrieve``, aborted
every tick before ``start_waiting_cases``, and the second case was never claimed.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mqi_communicator import CaseState, Communicator
from mqi_communicator.cli import main
from mqi_communicator.cli.status import held_back_table, summarize
from mqi_communicator.engine.results_place import candidate_folders

from .conftest import Workspace, tick_until
from .held_case import config_file

LONG = "p" * 250  # a legal name, long enough that the suffixed ones are cut to fit


def block_results_folders(results: Path, name: str, case_id: int) -> None:
    """Take every folder case ``case_id``'s results could go to (none stamped as its)."""
    for folder in candidate_folders(results, name, case_id):
        folder.mkdir()


def _by_name(comm: Communicator, name: str) -> int:
    return next(c.id for c in comm.cases() if c.name == name)


def test_a_case_failing_locally_does_not_stop_the_next_one(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    config = ws.config(
        command="mkdir -p output; echo dose > output/dose.txt",
        engine={"max_local_failures": 4, "backoff": {"base_s": 0.3, "factor": 2, "cap_s": 5}},
    )
    ws.results.mkdir()
    comm = ws.communicator(config)
    ws.drop_case(LONG)
    tick_until(comm, lambda: len(comm.cases()) == 1, "first case registered")
    first = _by_name(comm, LONG)
    # Results are placed only after a later tick sees the job end: block them all now.
    block_results_folders(ws.results, LONG, first)
    (ws.results / LONG / "old.txt").write_text("old", encoding="utf-8")  # nobody may lose it
    ws.drop_case("second")
    caplog.set_level(logging.DEBUG, logger="mqi_communicator")

    tick_until(
        comm,
        lambda: comm.case(first).local_failures >= 1 and len(comm.cases()) == 2,
        "first case's retrieval failed locally, second registered",
    )
    held = comm.case(first)
    assert held.status is CaseState.RETRIEVING
    assert held.last_error is not None and "no free results folder" in held.last_error
    assert held.next_attempt_at is not None and held.next_attempt_at > held.status_updated_at
    # Visible to an operator in other processes: `status` and `cases show`.
    summary = summarize(comm)
    assert [c.id for c in summary["held_back"]] == [first]
    assert "no free results folder" in held_back_table(summary["held_back"])
    shown = CliRunner().invoke(main, ["cases", "show", str(first), "--config", _cfg(ws, comm)])
    assert shown.exit_code == 0, shown.output
    assert "no free results folder" in shown.output and "next attempt (UTC)" in shown.output

    second = _by_name(comm, "second")
    tick_until(comm, lambda: comm.case(second).status is CaseState.COMPLETED, "second done")
    tick_until(comm, lambda: comm.case(first).status is CaseState.FAILED, "first gives up")

    failed = comm.case(first)
    assert failed.failure_reason is not None
    assert "local error while retrieving, 4 times in a row" in failed.failure_reason
    assert "no free results folder" in failed.failure_reason
    assert (ws.results / LONG / "old.txt").read_text(encoding="utf-8") == "old"
    # One traceback for the case, then one line per (backed-off) failure.
    mine = [r for r in caplog.records if f"case {first}:" in r.getMessage()]
    assert sum(1 for r in mine if r.exc_info) == 1
    assert 2 <= sum(1 for r in mine if "again" in r.getMessage()) <= 3
    # Exponential: each note schedules its retry twice as far out as the one before.
    # Read the scheduled delay (next_attempt_at - the note's time), not the gaps between
    # notes: those also hold however long a loaded machine took to run the next tick.
    notes = [
        t
        for t in comm.history(case_id=first)
        if t.trigger == "note" and t.detail.startswith("local error while")
    ]
    delays = [_scheduled(t.detail) - t.at for t in notes]
    assert delays == [timedelta(seconds=0.3), timedelta(seconds=0.6), timedelta(seconds=1.2)]
    # Backing off, not spinning: no attempt before the time the previous one scheduled.
    attempts = [t.at for t in notes] + [failed.status_updated_at]
    assert all(_scheduled(n.detail) <= later for n, later in zip(notes, attempts[1:], strict=True))


def _scheduled(detail: str) -> datetime:
    """The ``next_attempt_at`` a note row lists (``[..., next_attempt_at=<iso>, ...]``)."""
    found = re.search(r"next_attempt_at=([^,\]]+)", detail)
    assert found is not None, detail
    return datetime.fromisoformat(found.group(1))


def _cfg(ws: Workspace, comm: Communicator) -> str:
    """The workspace's config as a file, for the CLI (the engine's database)."""
    return str(config_file(ws, comm, results_dir="results"))


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Bind-mount ``folder`` read-only over itself (EROFS even for root); skip if refused."""
    up = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if up.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {up.stderr.decode().strip()}")
    try:
        ro = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, text=True
        )
        assert ro.returncode == 0, ro.stderr
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_results_folder_waits_and_others_still_start(ws: Workspace) -> None:
    config = ws.config(
        gpus=1,
        engine={"max_retrieve_failures": 1, "max_local_failures": 1, "backoff": {"base_s": 0.1}},
    )
    ws.results.mkdir()
    comm = ws.communicator(config)
    ws.drop_case("a")
    tick_until(comm, lambda: len(comm.cases()) == 1, "a registered")
    a = _by_name(comm, "a")
    with read_only(ws.results):
        ws.drop_case("b")
        tick_until(comm, lambda: comm.case(a).storage_waits >= 3, "a waits for the disk")
        waiting = comm.case(a)
        assert waiting.status is CaseState.RETRIEVING  # not failed, whatever the limits
        assert waiting.last_error is not None
        assert waiting.last_error.startswith("waiting: results folder")
        assert "not writable" in waiting.last_error and "MB free" in waiting.last_error
        # The GPU went back to the pool: the second case was claimed and ran meanwhile.
        tick_until(
            comm,
            lambda: (
                len(comm.cases()) == 2
                and comm.case(_by_name(comm, "b")).status is CaseState.RETRIEVING
            ),
            "b ran while a waited",
        )
    tick_until(
        comm,
        lambda: all(c.status is CaseState.COMPLETED for c in comm.cases()),
        "both completed once the folder is writable",
    )
    done = comm.case(a)
    assert done.attempt == 1 and done.last_error is None  # downloaded, never rerun
    assert (ws.results / "a" / "dose.txt").read_text(encoding="utf-8") == "dose\n"
