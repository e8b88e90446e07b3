"""Jobs adopted from the original system, against REAL stand-in Pueue tasks over real sshd.

The original MQI Communicator labelled its Pueue tasks ``mqic_case_<id>`` and ran them
without our wrapper. Here such tasks really run in the stand-in daemon (each in its own
Pueue group, so other tests' tasks cannot be mistaken for them), a legacy database
that points at them is adopted by ``db upgrade``, and a real Communicator watches them
over the loopback sshd: nothing is simulated.
"""

from __future__ import annotations

import json
import secrets
import shlex
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from mqi_communicator import CaseState, Communicator, EvidenceKind, GpuState
from mqi_communicator.migrations import api
from tests.infra.pueue import PueueStandin
from tests.infra.sshd import SshServer
from tests.migrations.test_legacy_adoption import LEGACY_DDL

from .conftest import E2E, case_named, reaches, ssh_host, tick_until

pytestmark = pytest.mark.ssh

T = "2024-03-05T14:22:10+09:00"


def _group(pueue: PueueStandin) -> str:
    name = f"lg{secrets.token_hex(3)}"
    pueue.cli("group", "add", name, "-p", "2", check=True)
    return name


def _task(pueue: PueueStandin, label: str, group: str, flag: Path, code: int = 0) -> int:
    """A legacy-style task (no wrapper) that runs until ``flag`` exists, then exits ``code``."""
    loop = f"while [ ! -e {shlex.quote(str(flag))} ]; do sleep 0.1; done; exit {code}"
    out = pueue.cli("add", "-p", "-l", label, "-g", group, "--", loop, check=True).stdout
    task = int(out.strip().splitlines()[-1])
    pueue.wait_for_status(task, lambda t: t is not None and "Running" in json.dumps(t["status"]))
    return task


def _state(pueue: PueueStandin, task: int) -> str:
    return json.dumps(
        json.loads(pueue.cli("status", "--json", check=True).stdout)["tasks"][str(task)]["status"]
    )


def _legacy_db(e2e: E2E, cases: list[tuple[Any, ...]], gpus: list[tuple[Any, ...]]) -> None:
    """The original system's database file, adopted by ``db upgrade`` (revisions 0001+0002)."""
    path = e2e.root / "mqi.db"
    con = sqlite3.connect(path)
    con.executescript(LEGACY_DDL)
    con.executemany("INSERT INTO cases VALUES (?,?,?,?,?,?,?,?,?)", cases)
    con.executemany("INSERT INTO gpu_resources VALUES (?,?,?)", gpus)
    con.commit()
    con.close()
    api.upgrade(f"sqlite:///{path}")


def _communicator(
    e2e: E2E, sshd: SshServer, pueue: PueueStandin, groups: list[str]
) -> Communicator:
    scheduler = {
        "kind": "pueue",
        "pueue_command": pueue.command,
        "kill_grace_s": 1,
        "timeout_s": 20,
    }
    path = e2e.write_config(
        {"gpu-server": ssh_host(sshd, scheduler, e2e.remote_base)},
        # Configured under other names than the legacy rows: the twins of the legacy slots.
        [{"name": f"gpu-server/{g}", "host": "gpu-server", "pueue_group": g} for g in groups],
    )
    return e2e.communicator(e2e.load(path))


def _ticks(comm: Communicator, n: int) -> None:
    for _ in range(n):
        comm.tick()


def test_adopted_running_case_is_watched_then_cancelled_by_pueue_kill(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    group = _group(pueue)
    task = _task(pueue, "mqic_case_5", group, e2e.root / "never")
    _legacy_db(
        e2e,
        [(5, "/data/QA/case 5", "running", 40, group, task, T, None, T)],
        [(group, "assigned", 5)],
    )
    comm = _communicator(e2e, live_sshd, pueue, [group])

    case = comm.case(5)
    # Adopted with the original label and its host resolved from the config's pueue_group.
    assert (case.label, case.job_id, case.job_origin, case.host) == (
        "mqic_case_5",
        str(task),
        "legacy",
        "gpu-server",
    )
    tick_until(comm, lambda: comm.case(5).started_at is not None, "legacy job observed running")
    e2e.drop_case("fresh")
    tick_until(comm, lambda: case_named(comm, "fresh") is not None, "fresh registered")
    _ticks(comm, 8)
    assert comm.case(5).status is CaseState.RUNNING
    gpus = {g.name: g for g in comm.gpus()}
    assert gpus[group].status is GpuState.ASSIGNED and gpus[group].case_id == 5
    # The slot's configured twin is not handed out while the legacy job holds it.
    fresh = case_named(comm, "fresh")
    assert fresh is not None and fresh.status is CaseState.SUBMITTED
    assert gpus[f"gpu-server/{group}"].status is GpuState.AVAILABLE
    assert "Running" in _state(pueue, task)

    comm.cancel(5)
    tick_until(comm, reaches_id(comm, 5, CaseState.CANCELLED), "legacy case cancelled")
    assert "Killed" in _state(pueue, task)  # `pueue kill <id>` after the label check
    (release,) = [t for t in comm.history(gpu_name=group) if t.trigger == "release"]
    assert release.evidence is not None
    assert release.evidence.kind is EvidenceKind.KILL_CONFIRMED
    assert release.evidence.label == "mqic_case_5" and release.evidence.job_id == str(task)
    assert {g.name: g for g in comm.gpus()}[group].status is GpuState.AVAILABLE
    # The slot is free now: the waiting case runs on its twin, through our wrapper.
    tick_until(comm, reaches(comm, "fresh", CaseState.COMPLETED), "fresh completed", limit_s=90)
    fresh = case_named(comm, "fresh")
    assert fresh is not None and fresh.job_origin is None


def reaches_id(comm: Communicator, case_id: int, state: CaseState) -> Any:
    return lambda: comm.case(case_id).status is state


def test_adopted_zombies_stay_while_their_tasks_run_and_leave_on_evidence(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    stuck, killable, elsewhere = _group(pueue), _group(pueue), _group(pueue)
    stranger = _task(pueue, "someone-else", elsewhere, e2e.root / "stranger.stop")
    legacy6 = _task(pueue, "mqic_case_6", stuck, e2e.root / "six.stop")
    legacy8 = _task(pueue, "mqic_case_8", killable, e2e.root / "never")
    _legacy_db(
        e2e,
        [
            # The database says case 6's task is the one whose id is now a stranger's.
            (6, "/data/QA/case 6", "failed", 10, stuck, stranger, T, T, T),
            (8, "/data/QA/case 8", "failed", 10, killable, legacy8, T, T, T),
        ],
        [(stuck, "zombie", 6), (killable, "zombie", 8)],
    )
    comm = _communicator(e2e, live_sshd, pueue, [stuck, killable])
    z6 = {g.name: g for g in comm.gpus()}[stuck]
    assert (z6.status, z6.job_label, z6.job_id, z6.quarantined_case_id, z6.host) == (
        GpuState.ZOMBIE,
        "mqic_case_6",
        str(stranger),
        6,
        "gpu-server",
    )

    # Zombie 8 is re-killed like any other (pueue kill after the label check) and leaves.
    def recovered(name: str) -> bool:
        return {g.name: g for g in comm.gpus()}[name].status is GpuState.AVAILABLE

    tick_until(comm, lambda: recovered(killable), "zombie 8 recovered")
    assert "Killed" in _state(pueue, legacy8)
    (rec8,) = [t for t in comm.history(gpu_name=killable) if t.trigger == "recover"]
    assert rec8.evidence is not None and rec8.evidence.label == "mqic_case_8"

    # Zombie 6: its id shows a stranger; mqic_case_6 still runs in its group: it stays,
    # and the stranger is never killed.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        comm.tick()
        assert {g.name: g for g in comm.gpus()}[stuck].status is GpuState.ZOMBIE
    assert [t for t in comm.history(gpu_name=stuck) if "kill requested" in t.detail]
    assert "Running" in _state(pueue, stranger) and "Running" in _state(pueue, legacy6)

    (e2e.root / "six.stop").touch()  # the legacy job ends
    tick_until(comm, lambda: recovered(stuck), "zombie 6 recovered")
    (rec6,) = [t for t in comm.history(gpu_name=stuck) if t.trigger == "recover"]
    assert rec6.evidence is not None and rec6.evidence.kind is EvidenceKind.CONFIRMED_ABSENT
    assert rec6.evidence.label == "mqic_case_6"
    z6 = {g.name: g for g in comm.gpus()}[stuck]
    assert z6.quarantined_case_id is None and z6.job_label is None
    assert "Running" in _state(pueue, stranger)
