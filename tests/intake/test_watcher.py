"""The watch folder with a real watchdog observer, real directories and a controllable clock."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqi_communicator.intake import Intake

# watchdog 7's recursive inotify adds a folder created during its own walk twice and
# warns; the second callback replaces the first (harmless for us).
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id .* already exists:RuntimeWarning")


class Clock:
    """Epoch seconds that only move when told (starts at the real time: mtimes are real)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sync(self) -> None:
        """Catch up with real time (files just written carry real mtimes)."""
        self.now = max(self.now, time.time())


def wait_until(cond: Callable[[], bool], what: str, limit_s: float = 10.0) -> None:
    """Wait for an asynchronous event (the observer thread); fails if it never happens."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


class Registry:
    """The stand-in store: remembers what was registered, refuses nothing."""

    def __init__(self, known: set[Path] | None = None) -> None:
        self.registered: list[Path] = []
        self.known = known or set()

    def register(self, path: Path) -> None:
        assert path not in self.registered, f"{path} registered twice"
        self.registered.append(path)

    def is_known(self, path: Path) -> bool:
        return path in self.known

    def intake(
        self, watch: Path, clock: Clock, *, quiescence_s: float, scan_interval_s: float, **kw: Any
    ) -> Intake:
        """An Intake that registers into this registry, on the fake ``clock``."""
        return Intake(
            watch,
            register=self.register,
            is_known=self.is_known,
            quiescence_s=quiescence_s,
            scan_interval_s=scan_interval_s,
            clock=clock,
            **kw,
        )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Intake, Registry, Clock, Path]]:
    watch = tmp_path / "watch"
    watch.mkdir()
    clock = Clock()
    registry = Registry()
    intake = registry.intake(watch, clock, quiescence_s=5, scan_interval_s=3600)
    yield intake, registry, clock, watch
    intake.stop()


def drop_case(watch: Path, name: str) -> Path:
    case = watch / name
    (case / "ct").mkdir(parents=True)
    (case / "ct" / "slice1.dcm").write_bytes(b"1" * 100)
    (case / "plan.dcm").write_bytes(b"p")
    return case


def test_new_folder_registers_after_quiescence_and_wakes(
    env: tuple[Intake, Registry, Clock, Path],
) -> None:
    intake, registry, clock, watch = env
    intake.start()
    intake.wake.clear()
    case = drop_case(watch, "patient 01")
    wait_until(lambda: case in intake.pending(), "the observer saw the new folder")
    assert intake.wake.is_set()
    assert intake.next_check_in() == pytest.approx(5, abs=0.01)
    clock.advance(4)
    assert intake.poll() == []
    # Another file arrives late: the quiet period starts again. The clock moves first
    # and the wait is on the restarted quiet period itself, not on `wake` (the observer
    # thread may set it before a clear() that follows the write, or for an older event).
    clock.advance(0.5)
    intake.wake.clear()
    (case / "late.dcm").write_bytes(b"l")
    wait_until(lambda: intake.next_check_in() > 4.9, "the observer saw the late file")
    assert intake.wake.is_set()
    clock.advance(4.9)
    assert intake.poll() == []
    clock.advance(0.2)
    assert intake.poll() == [case]
    assert registry.registered == [case]
    # More events under a registered case never register it again.
    (case / "again.dcm").write_bytes(b"a")
    clock.advance(60)
    assert intake.poll() == [] and registry.registered == [case]


def test_startup_scan_finds_folders_created_while_down(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    old = drop_case(watch, "made while down")
    done = drop_case(watch, "already registered")
    drop_case(watch, ".hidden")
    clock = Clock()
    registry = Registry(known={done})
    intake = registry.intake(watch, clock, quiescence_s=5, scan_interval_s=3600)
    try:
        intake.start()
        assert intake.pending() == [old]
        # A folder first seen at start-up still gets a full quiet period (it may be mid-copy).
        assert intake.poll() == []
        clock.sync()
        clock.advance(5)
        assert intake.poll() == [old]
        assert registry.registered == [old]
    finally:
        intake.stop()


def test_periodic_rescan_catches_missed_folders(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    clock = Clock()
    registry = Registry()
    # Never started: no observer at all, only the scans in poll().
    intake = registry.intake(watch, clock, quiescence_s=1, scan_interval_s=30)
    assert intake.poll() == []
    case = drop_case(watch, "c")
    clock.advance(10)
    assert intake.poll() == [] and intake.pending() == []
    clock.advance(20)
    assert intake.poll() == [] and intake.pending() == [case]
    clock.sync()
    clock.advance(1)
    assert intake.poll() == [case]


def test_hidden_and_temporary_folders_are_ignored_until_renamed(
    env: tuple[Intake, Registry, Clock, Path],
) -> None:
    intake, registry, clock, watch = env
    intake.start()
    drop_case(watch, ".sync")
    partial = drop_case(watch, "copying.partial")
    drop_case(watch, "backup~")
    (watch / "loose.txt").write_text("not a case")
    final = watch / "copying"
    partial.rename(final)
    wait_until(lambda: final in intake.pending(), "the rename was seen")
    clock.sync()
    clock.advance(5)
    intake.scan()
    assert intake.poll() == [final]
    clock.advance(60)
    intake.scan()
    assert intake.poll() == []
    assert registry.registered == [final]


def test_deleted_before_settled_is_dropped_with_a_log_line(
    env: tuple[Intake, Registry, Clock, Path], caplog: pytest.LogCaptureFixture
) -> None:
    intake, registry, clock, watch = env
    intake.start()
    case = drop_case(watch, "oops")
    wait_until(lambda: case in intake.pending(), "the observer saw the folder")
    with caplog.at_level(logging.INFO, logger="mqi_communicator.intake"):
        shutil.rmtree(case)
        wait_until(lambda: case not in intake.pending(), "the deletion was seen")
        clock.advance(10)
        assert intake.poll() == []
    assert registry.registered == []
    assert f"{case} was deleted before it settled; dropped" in caplog.text


def test_ready_marker_mode_registers_when_marker_appears(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    clock = Clock()
    registry = Registry()
    woke = threading.Event()
    intake = registry.intake(
        watch, clock, quiescence_s=5, scan_interval_s=3600, ready_marker="READY", wake=woke
    )
    try:
        intake.start()
        case = drop_case(watch, "marked")
        wait_until(lambda: case in intake.pending(), "the folder was seen")
        clock.advance(600)
        assert intake.poll() == []
        woke.clear()
        (case / "READY").write_text("")
        wait_until(woke.is_set, "the marker woke the engine")
        assert intake.poll() == [case]
    finally:
        intake.stop()


def test_failed_registration_is_retried_not_lost(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    case = drop_case(watch, "c")
    clock = Clock()
    attempts: list[Path] = []

    def register(path: Path) -> None:
        attempts.append(path)
        if len(attempts) == 1:
            raise OSError("database is busy")

    intake = Intake(
        watch,
        register=register,
        is_known=lambda p: False,
        quiescence_s=1,
        scan_interval_s=3600,
        clock=clock,
    )
    intake.scan()
    clock.sync()
    clock.advance(1)
    assert intake.poll() == [] and intake.pending() == [case]
    clock.advance(1)
    assert intake.poll() == [case]
    assert attempts == [case, case]


def test_without_file_system_events_intake_falls_back_to_scans(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "share"
    blocker.write_text("the share is not mounted yet")  # a file where the folder should be
    watch = blocker / "cases"
    clock = Clock()
    registry = Registry()
    intake = registry.intake(watch, clock, quiescence_s=1, scan_interval_s=30)
    try:
        with caplog.at_level(logging.WARNING, logger="mqi_communicator.intake"):
            intake.start()  # must not raise
            assert intake.poll() == []
        assert "no file-system events" in caplog.text
        blocker.unlink()
        case = drop_case(watch, "late share")
        clock.sync()
        clock.advance(30)
        assert intake.poll() == []  # the rescan found it and restarted the observer
        assert intake.pending() == [case]
        clock.advance(1)
        assert intake.poll() == [case]
        # Events flow again: a new folder is seen without waiting for a scan.
        second = drop_case(watch, "second")
        wait_until(lambda: second in intake.pending(), "the restarted observer saw it")
    finally:
        intake.stop()
