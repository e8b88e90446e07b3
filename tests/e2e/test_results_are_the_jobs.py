"""Results are only what the job wrote: a case's own (stale) results never count.

Real processes end to end, through LocalTransport and through the real loopback sshd,
jobs run by the local scheduler. Each case folder carries its own ``output`` in a
hostile form; the stand-in job writes ``output/new.dat`` unless the case holds a
``NO_OUTPUT`` file. On the code before the upload left the results folder out, every
case here failed its assertion (stale files downloaded, a job writing nothing
"completed", or the case refused or its job broken by a file/symlink named ``output``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mqi_communicator import CaseState
from tests.infra.sshd import SshServer

from .conftest import E2E, case_named, reaches, ssh_host, tick_until

JOB = "[ -f NO_OUTPUT ] && exit 0; mkdir -p output && echo new > output/new.dat"


def _stale_folder(case: Path, elsewhere: Path) -> None:
    (case / "output").mkdir()
    (case / "output" / "stale.dat").write_text("stale")


def _stale_and_no_output(case: Path, elsewhere: Path) -> None:
    _stale_folder(case, elsewhere)
    (case / "NO_OUTPUT").write_text("the job writes nothing")


def _file_named_output(case: Path, elsewhere: Path) -> None:
    (case / "output").write_text("stale")


def _symlink_to_elsewhere(case: Path, elsewhere: Path) -> None:
    (case / "output").symlink_to(elsewhere)


def _letter_case(case: Path, elsewhere: Path) -> None:
    (case / "OUTPUT").mkdir()
    (case / "OUTPUT" / "stale.dat").write_text("stale")
    (case / "Output").write_text("stale")


#: case name -> how its folder is made hostile
CASES: dict[str, Callable[[Path, Path], None]] = {
    "stale folder": _stale_folder,
    "stale, job writes nothing": _stale_and_no_output,
    "file named output": _file_named_output,
    "symlink to elsewhere": _symlink_to_elsewhere,
    "letter case": _letter_case,
}


def _snapshot(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every entry under ``folder`` (symlinks not followed): type, inode, size, mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            out[path.relative_to(folder).as_posix()] = (
                st.st_mode,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
            )
    return out


def _host(kind: str, e2e: E2E, request: pytest.FixtureRequest) -> dict[str, Any]:
    scheduler = {"kind": "local", "kill_grace_s": 1, "timeout_s": 20}
    if kind == "local":
        return {"transport": "local", "scheduler": scheduler, "remote_base": str(e2e.remote_base)}
    sshd: SshServer = request.getfixturevalue("live_sshd")
    return ssh_host(sshd, scheduler, e2e.remote_base)


@pytest.mark.parametrize("kind", ["local", pytest.param("ssh", marks=pytest.mark.ssh)])
def test_only_files_the_job_wrote_are_results(
    e2e: E2E, request: pytest.FixtureRequest, kind: str
) -> None:
    path = e2e.write_config(
        {"gpu-server": _host(kind, e2e, request)},
        [{"name": f"gpu-server/gpu{i}", "host": "gpu-server"} for i in range(len(CASES))],
        command=JOB,
    )
    elsewhere = e2e.root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stale.dat").write_text("stale, outside the case")
    planted: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, plant in CASES.items():
        case = e2e.drop_case(name, slices=1)
        plant(case, elsewhere)
        planted[name] = _snapshot(case)
    comm = e2e.communicator(e2e.load(path))
    for name in CASES:
        tick_until(
            comm, reaches(comm, name, CaseState.COMPLETED, CaseState.FAILED), f"{name} ended"
        )

    for name in CASES:
        case = case_named(comm, name)
        assert case is not None and case.remote_dir is not None
        remote = Path(case.remote_dir)  # loopback: the far side is this machine
        # The case's own results folder never reached the far side, in any form.
        assert not [
            p for p in remote.iterdir() if p.name.casefold() == "output" and p.name != "output"
        ], name
        notes = [t.detail for t in comm.history(case_id=case.id) if t.trigger == "note"]
        assert any("left out" in n and "results come only from the job" in n for n in notes)
        # ... and the case folder itself is unchanged.
        folder = e2e.watch / name
        assert _snapshot(folder) == planted[name], name
        if name == "stale, job writes nothing":
            assert case.status is CaseState.FAILED, case
            assert "the job produced no result files" in (case.failure_reason or ""), case
            assert not (remote / "output").exists()
            assert not (e2e.results / name).exists()
            continue
        assert case.status is CaseState.COMPLETED, (name, case.failure_reason)
        assert sorted(p.name for p in (remote / "output").iterdir()) == ["new.dat"], name
        result = e2e.results / name
        assert sorted(p.name for p in result.iterdir()) == [".mqi-result.json", "new.dat"], name
        assert (result / "new.dat").read_text() == "new\n"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["stale.dat"]
