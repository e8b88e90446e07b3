"""Crash leftovers of SSH uploads are removed at the next start: only ours, only old ones.

The leftover is made by a real crash: an engine process uploads a 64 MiB case to the
loopback sshd (throttled, so the upload is surely under way); the engine is frozen, the
far side's receiver killed with SIGKILL (as an OOM killer or a reboot would), then the
engine killed with kill -9. Nobody is left to remove ``<case dir>.partial-<hex>``.
Other entries are planted beside it. The "remote" is this machine (loopback), so the
test sees the far side's files directly and ages them with ``os.utime``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from mqi_communicator import CaseState
from tests.infra.pueue import PueueStandin
from tests.infra.sshd import SshServer

from .conftest import E2E, case_named, pueue_ssh_config, tick_until
from .slow_upload import start_uploading

pytestmark = [
    pytest.mark.ssh,
    pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning"),
]

HOUR = 3600.0

ENGINE = """
from mqi_communicator import Communicator
from mqi_communicator.config import load_config

Communicator(load_config(sys.argv[1], env={}), progress=progress).run_forever()
"""


def _age(path: Path, seconds: float) -> Path:
    """Set the mtime of ``path`` and of everything under it (links themselves) back."""
    then = time.time() - seconds
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, (then, then), follow_symlinks=False)
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def _tree(path: Path, age_s: float) -> Path:
    (path / "ct").mkdir(parents=True)
    (path / "ct" / "slice.dcm").write_bytes(b"x" * 1000)
    return _age(path, age_s)


def _far_side_pids(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (the far side's upload commands)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _crash_mid_upload(e2e: E2E, config_path: Path) -> Path:
    """Run an engine until it uploads, crash both sides; the partial folder left."""
    engine = start_uploading(ENGINE, config_path)
    try:
        deadline = time.monotonic() + 30
        while not (found := [p for p in e2e.remote_base.iterdir() if ".partial-" in p.name]):
            assert time.monotonic() < deadline, "the far side never made its partial folder"
            time.sleep(0.02)
        (partial,) = found
        # Frozen first, so the engine cannot react; then the far side's session group
        # (the script that would remove the partial, and its receiver) dies at once.
        engine.send_signal(signal.SIGSTOP)
        pids = _far_side_pids(partial.name)
        assert pids, "no far-side upload process found"
        for pgid in {os.getpgid(pid) for pid in pids}:
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _far_side_pids(partial.name):
            assert time.monotonic() < deadline, "far-side upload processes survived SIGKILL"
            time.sleep(0.02)
        engine.kill()  # kill -9
    finally:
        if engine.poll() is None:
            engine.kill()
        engine.communicate(timeout=30)
    assert partial.is_dir(), "the crash must leave the partial upload behind"
    return partial


def test_start_removes_our_old_partial_uploads_on_an_ssh_host_and_nothing_else(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    config_path = pueue_ssh_config(e2e, live_sshd, pueue)
    big = e2e.drop_case("big")
    (big / "ct" / "volume.raw").write_bytes(os.urandom(64 << 20))
    e2e.drop_case("other")  # waits for the one GPU: live at attempt 1 after the crash
    crashed = _crash_mid_upload(e2e, config_path)
    _age(crashed, HOUR)

    base = e2e.remote_base
    outside = _tree(e2e.root / "outside", HOUR)
    outside2 = _tree(e2e.root / "outside2", HOUR)
    removed = [
        crashed,
        _tree(base / "mqic_case_77_a1.partial-0a1b2c3d4e5f", HOUR),  # ssh (12 hex)
        _tree(base / "mqic_case_78_a2.partial-0a1b2c3d", HOUR),  # local transport (8 hex)
        base / "mqic_case_77_a1.partial-0a1b2c3d4e5f.sha256",  # its manifest (no python3)
    ]
    removed[-1].write_text("0" * 64 + "  ./ct/slice.dcm\n", "utf-8")
    _age(removed[-1], HOUR)
    escaping = _tree(base / "mqic_case_80_a1.partial-00000000aaaa", HOUR)
    (escaping / "escape").symlink_to(outside2)
    _age(escaping, HOUR)
    removed.append(escaping)
    young_inside = _tree(base / "mqic_case_81_a1.partial-00000000bbbb", HOUR)
    (young_inside / "ct" / "new.dcm").write_bytes(b"still being written")
    kept = [
        _tree(base / "mqic_case_82_a1.partial-00000000cccc", 60),  # young: maybe alive
        young_inside,
        _tree(base / "mqic_case_77_a1", HOUR),  # a real case folder
        _tree(base / "mqic_case_77_a1.partial-NOTHEX123456", HOUR),  # not our name
        _tree(base / "patient.partial-0a1b2c3d4e5f", HOUR),  # not our name
        _tree(base / "mqic_case_77_a1.partial-0a1b2c3d4e5f.old", HOUR),  # not our name
        _tree(base / "mqic_case_77_a1.partial-0a1b2c3d4e5f\nmqic_case_9_a1", HOUR),  # newline
        _tree(base / "mqic_case_77_a1.partial-$(touch PWNED)", HOUR),  # shell text
        _tree(e2e.root / "mqic_case_77_a1.partial-0a1b2c3d4e5f", HOUR),  # beside the base
        _tree(base / "sub" / "mqic_case_77_a1.partial-0a1b2c3d4e5f", HOUR),  # deeper
    ]
    link = base / "mqic_case_79_a1.partial-00000000dddd"  # our name, but a symlink out
    link.symlink_to(outside)
    os.utime(link, (time.time() - HOUR,) * 2, follow_symlinks=False)

    comm = e2e.communicator(e2e.load(config_path))
    other = case_named(comm, "other")
    old = case_named(comm, "big")
    assert other is not None and other.status is CaseState.SUBMITTED
    assert old is not None and old.status is CaseState.SUBMITTING  # as the crash left it
    assert crashed.name.startswith(Path(old.remote_dir or "").name + ".partial-")
    # A live case's attempt keeps its partial whatever its age (an upload in flight).
    live = _tree(base / f"mqic_case_{other.id}_a{other.attempt}.partial-00000000eeee", HOUR)
    kept.append(live)

    # The sweep waits for "big"'s recovery (not found by label: a new attempt, beside the
    # tick), which turns its old attempt's partial into a leftover.
    tick_until(comm, lambda: comm.reconciler.leftovers.pending == [], "recovered, then swept")
    assert comm.case(old.id).attempt > old.attempt
    for path in removed:
        assert not os.path.lexists(path), path
    for path in kept:
        assert path.is_dir() and (path / "ct" / "slice.dcm").is_file(), path
    assert link.is_symlink() and (outside / "ct" / "slice.dcm").is_file()
    assert (outside2 / "ct" / "slice.dcm").is_file()  # a link inside was not followed
    assert not (base / "PWNED").exists() and not Path("PWNED").exists()
    tick_until(comm, lambda: comm.case(old.id).status is CaseState.COMPLETED, "big completed")


def test_a_host_down_at_start_is_swept_once_it_answers(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    config_path = pueue_ssh_config(e2e, live_sshd, pueue)
    leftover = _tree(e2e.remote_base / "mqic_case_5_a1.partial-0a1b2c3d4e5f", HOUR)
    live_sshd.stop()
    comm = e2e.communicator(e2e.load(config_path))
    comm.tick()  # the sweep runs beside the tick: start is not held up by the host

    def down() -> bool:
        health = comm.host_health().get("gpu-server")
        return health is not None and not health.up

    tick_until(comm, down, "the sweep found the host down")
    assert leftover.exists()
    assert comm.reconciler.leftovers.pending == ["gpu-server"]
    live_sshd.start()
    tick_until(comm, lambda: not leftover.exists(), "leftover removed once the host answers")
    assert comm.reconciler.leftovers.pending == []
