"""Pure intake rules on real directories: ignored names, settling, empty/unreadable cases."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_communicator.intake import SettleTracker, case_problem, is_ignored_name, list_candidates


@pytest.mark.parametrize(
    "name",
    [
        ".hidden",
        ".mqi-staging",
        "~$lock",
        "case~",
        "case.tmp",
        "case.TMP",
        "case.partial",
        "case.part",
        "case.crdownload",
        "$RECYCLE.BIN",
        "lost+found",
        "",
    ],
)
def test_ignored_names(name: str) -> None:
    assert is_ignored_name(name)


@pytest.mark.parametrize("name", ["case1", "환자 01", "it's $(x)", "a.b", "partial", "tmp"])
def test_case_names_not_ignored(name: str) -> None:
    assert not is_ignored_name(name)


def make_case(root: Path, name: str = "case1") -> Path:
    case = root / name
    (case / "sub").mkdir(parents=True)
    (case / "sub" / "plan.dcm").write_bytes(b"x" * 10)
    return case


def test_list_candidates_skips_files_and_ignored(tmp_path: Path) -> None:
    make_case(tmp_path, "b")
    make_case(tmp_path, "a")
    make_case(tmp_path, ".hidden")
    make_case(tmp_path, "c.partial")
    (tmp_path / "loose-file").write_text("x")
    assert list_candidates(tmp_path) == [tmp_path / "a", tmp_path / "b"]
    assert list_candidates(tmp_path / "missing") == []


def test_quiescence_by_events_then_confirmed_by_mtimes(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    t0 = time.time()
    tracker = SettleTracker(quiescence_s=5)
    tracker.note(case, t0)
    assert tracker.next_due_in(t0) == pytest.approx(5)
    assert tracker.check(t0 + 4.9).settled == []
    # A write the watcher missed: its mtime restarts the quiet period.
    os.utime(case / "sub" / "plan.dcm", (t0 + 3, t0 + 3))
    assert tracker.check(t0 + 5.1).settled == []
    assert tracker.pending() == [case]
    assert tracker.next_due_in(t0 + 5.1) == pytest.approx(2.9)
    assert tracker.check(t0 + 8.1).settled == [case]
    assert tracker.pending() == []


def test_event_restarts_quiet_period_even_with_old_mtimes(tmp_path: Path) -> None:
    # A copy that keeps old mtimes (cp -p, robocopy) is only visible through events.
    case = make_case(tmp_path)
    os.utime(case / "sub" / "plan.dcm", (1000, 1000))
    t0 = time.time()
    tracker = SettleTracker(quiescence_s=5)
    tracker.note(case, t0)
    tracker.note(case, t0 + 4)
    assert tracker.check(t0 + 6).settled == []
    assert tracker.check(t0 + 9).settled == [case]


def test_future_mtime_does_not_hold_a_case_forever(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    t0 = time.time()
    os.utime(case / "sub" / "plan.dcm", (t0 + 10_000, t0 + 10_000))
    tracker = SettleTracker(quiescence_s=5)
    tracker.note(case, t0)
    assert tracker.check(t0 + 6).settled == [case]


def test_ready_marker_mode(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    t0 = time.time()
    tracker = SettleTracker(quiescence_s=5, ready_marker="READY")
    tracker.note(case, t0)
    assert tracker.next_due_in(t0) is None
    assert tracker.check(t0 + 1000).settled == []
    (case / "READY").write_text("")
    assert tracker.check(t0 + 0.1).settled == [case]


def test_deleted_before_settled_is_reported_vanished(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    marker_case = make_case(tmp_path, "m")
    t0 = time.time()
    quiet = SettleTracker(quiescence_s=5)
    quiet.note(case, t0)
    marker = SettleTracker(quiescence_s=5, ready_marker="READY")
    marker.note(marker_case, t0)
    shutil.rmtree(case)
    shutil.rmtree(marker_case)
    result = quiet.check(t0 + 6)
    assert (result.settled, result.vanished) == ([], [case])
    assert marker.check(t0).vanished == [marker_case]
    assert quiet.pending() == [] and marker.pending() == []


def test_case_problem_good_empty_and_only_subdirs(tmp_path: Path) -> None:
    assert case_problem(make_case(tmp_path)) is None
    (tmp_path / "empty").mkdir()
    assert case_problem(tmp_path / "empty") == "empty: the case directory holds no files"
    (tmp_path / "dirs" / "a" / "b").mkdir(parents=True)
    assert case_problem(tmp_path / "dirs") == "empty: the case directory holds no files"


def test_case_problem_ignores_what_the_upload_leaves_out(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    (case / "Output").symlink_to(tmp_path / "nowhere")  # would be "unreadable"
    assert case_problem(case) is not None
    assert case_problem(case, ("output",)) is None
    only = tmp_path / "only_results"
    (only / "output").mkdir(parents=True)
    (only / "output" / "stale.dat").write_text("stale")
    assert case_problem(only, ("output",)) == "empty: the case directory holds no files"


def test_case_problem_dangling_symlink_and_fifo(tmp_path: Path) -> None:
    case = make_case(tmp_path)
    (case / "link.dcm").symlink_to(tmp_path / "gone.dcm")
    problem = case_problem(case)
    assert problem is not None and problem.startswith("unreadable: cannot read link.dcm")
    (case / "link.dcm").unlink()
    os.mkfifo(case / "pipe")
    assert case_problem(case) == "unreadable: pipe is not a regular file"


@pytest.fixture
def world_dir() -> Iterator[Path]:
    # pytest's tmp dirs are private to root; this one must be reachable by 'nobody'.
    path = Path(tempfile.mkdtemp(prefix="mqi-intake-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(
    not hasattr(os, "fork") or os.geteuid() != 0, reason="needs root to drop to nobody"
)
def test_case_problem_permission_denied_as_unprivileged_user(world_dir: Path) -> None:
    """Root reads everything, so the check runs in a forked child that became 'nobody'."""
    case = make_case(world_dir)
    for p in (case, case / "sub"):
        p.chmod(0o755)
    (case / "sub" / "plan.dcm").chmod(0o644)
    (case / "secret.dcm").write_bytes(b"s")
    (case / "secret.dcm").chmod(0o000)
    locked = make_case(world_dir, "locked")
    (locked / "sub").chmod(0o700)
    locked.chmod(0o755)

    def as_nobody(path: Path) -> str | None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop privileges for good, check, report, exit
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.write(write_fd, json.dumps(case_problem(path)).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        result: str | None = json.loads(data)
        return result

    assert as_nobody(case) == "unreadable: cannot read secret.dcm: Permission denied"
    assert as_nobody(locked) == "unreadable: cannot list sub: Permission denied"
    assert case_problem(case) is None  # root can read it: the child really was unprivileged
