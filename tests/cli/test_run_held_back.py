"""``run``'s console says once per change which cases are held back, and why.

The real ``run`` in a subprocess (SQLite, local transport and scheduler). One case's
retrieval fails with a real FileExistsError (every results folder it could use is taken,
tests/service/held_case.py), or waits on a real read-only results folder (a bind mount).
Its name and the results folder hold escape sequences.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mqi_communicator.migrations.api import upgrade
from tests.migrations.cli_run import console_script
from tests.service.held_case import (
    ERROR_START,
    HOSTILE_NAME,
    HOSTILE_NAME_SHOWN,
    HOSTILE_RESULTS,
    HOSTILE_RESULTS_SHOWN,
    block_results_folders,
)
from tests.service.test_fault_isolation import read_only

from .conftest import local_config, write_config

BOUND_S = 60.0  # an upper bound for waiting, not a speed assertion
NEXT = r"next attempt \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((in \d+s|due)\)"


def _setup(tmp_path: Path, backoff: dict[str, Any]) -> tuple[Path, Path]:
    cfg = local_config(
        tmp_path,
        results_dir=HOSTILE_RESULTS,
        gpus=[{"name": "local/gpu0", "host": "local"}],
        engine={
            "poll_interval_s": 0.2,
            "kill_confirm_s": 10,
            "max_local_failures": 10,
            "backoff": backoff,
        },
    )
    path = write_config(tmp_path, cfg)
    (tmp_path / HOSTILE_RESULTS).mkdir()
    upgrade(cfg["database_url"])
    return path, tmp_path / HOSTILE_RESULTS


@contextmanager
def _run(config: Path) -> Iterator[Callable[[], str]]:
    """``run`` in its own process; yields a reader of its console so far."""
    out = config.parent / "run.out"
    with out.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            [console_script(), "run", "--config", str(config)], stdout=sink, stderr=sink
        )
        try:
            yield lambda: out.read_text(encoding="utf-8")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=BOUND_S) == 0, out.read_text(encoding="utf-8")


def _wait_for(read: Callable[[], str], pattern: str) -> str:
    end = time.monotonic() + BOUND_S
    while not re.search(pattern, text := read()):
        assert time.monotonic() < end, f"never printed: {pattern}\n{text}"
        time.sleep(0.1)
    return text


def _drop(watch: Path, name: str) -> None:
    staging = watch / ".incoming"
    staging.mkdir()
    (staging / "plan.dcm").write_bytes(b"DICM" * 100)
    staging.rename(watch / name)


def test_run_prints_a_local_failure_once_per_change(tmp_path: Path) -> None:
    config, results = _setup(tmp_path, {"base_s": 1.0, "factor": 2.0, "cap_s": 60})
    block_results_folders(results, HOSTILE_NAME, 1)  # the first case of a new database
    with _run(config) as console:
        _drop(tmp_path / "watch", HOSTILE_NAME)
        text = _wait_for(console, r"held back: 2 local failures")
    held = [line for line in text.splitlines() if ": held back: " in line]
    # One line per failure, not one per tick (about five ticks ran between the two).
    assert len(held) == 2, text
    error = rf"{ERROR_START} 1 in {re.escape(str(tmp_path))}/{re.escape(HOSTILE_RESULTS_SHOWN)}"
    name = re.escape(HOSTILE_NAME_SHOWN)
    assert re.search(rf"case 1 \({name}\): held back: 1 local failure, {NEXT}: {error}$", held[0])
    assert re.search(rf"case 1 \({name}\): held back: 2 local failures, {NEXT}: {error}$", held[1])
    assert "\x1b" not in text


def test_run_prints_a_wait_for_the_results_disk(tmp_path: Path) -> None:
    config, results = _setup(tmp_path, {"base_s": 30.0})
    with read_only(results), _run(config) as console:
        _drop(tmp_path / "watch", "patient 01")
        text = _wait_for(console, r"held back: 1 wait")
    line = next(x for x in text.splitlines() if "held back: 1 wait" in x)
    folder = re.escape(f"{tmp_path}/{HOSTILE_RESULTS_SHOWN}")
    why = rf"waiting for the results disk: results folder {folder} not writable \(.* MB free\)"
    assert re.search(rf"case 1 \(patient 01\): held back: 1 wait, {NEXT}: {why}$", line), line
    assert "\x1b" not in text
