"""Entries of the watch folder that are not cases: logged once and printed once by `run`."""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

import pytest

from mqi_communicator import Communicator
from mqi_communicator.cli.progress import ProgressPrinter
from mqi_communicator.config import parse_config

pytestmark = [
    pytest.mark.filterwarnings("ignore:Callback with id .* already exists:RuntimeWarning"),
    pytest.mark.skipif(os.name == "nt", reason="FIFOs and these names are POSIX"),
]


def _config(tmp_path: Path) -> object:
    return parse_config(
        {
            "watch_dir": "cases",
            "results_dir": "results",
            "command": ["true"],
            "intake": {"quiescence_s": 0.1, "scan_interval_s": 0.1},
            "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
            "gpus": [{"name": "local/gpu0", "host": "local"}],
        },
        base_dir=tmp_path,
        env={},
    )


def test_refused_entries_are_said_once_with_the_reason_and_escaped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watch = tmp_path / "cases"
    watch.mkdir()
    (tmp_path / "results").mkdir()
    (watch / "notes\x1b[31m.txt").write_text("a file, not a case")
    os.mkfifo(watch / "pipe")
    (watch / "real").mkdir()
    (watch / "real" / "f.dcm").write_text("x")
    (watch / "link").symlink_to(watch / "real")
    (watch / "copying.part").mkdir()
    (watch / "empty").mkdir()
    bad = os.fsencode(watch) + b"/bad\xff"
    os.mkdir(bad)
    os.close(os.open(bad + b"/f.dcm", os.O_CREAT | os.O_WRONLY))
    out = io.StringIO()
    printer = ProgressPrinter(out=out)
    caplog.set_level(logging.INFO, logger="mqi_communicator")
    with Communicator(_config(tmp_path)) as comm:  # type: ignore[arg-type]
        assert comm.intake is not None
        deadline = time.monotonic() + 60
        rounds = 0
        while rounds < 6:  # until both folders are cases, then several polls and scans more
            comm.tick()
            comm.intake.scan()
            printer.update(comm)
            if len(comm.cases()) == 2:
                rounds += 1
            assert time.monotonic() < deadline, comm.cases()
            time.sleep(0.05)
        names = sorted(c.name for c in comm.cases())
    assert names == ["empty", "real"]  # `empty` is registered and failed at once
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    expected = {
        "notes": "a file, not a folder",
        "pipe": "a FIFO",
        "link": "a symbolic link",
        "copying.part": "ignored name",
        "bad": "not valid UTF-8",
    }
    for name, reason in expected.items():
        hits = [m for m in refused if f"/{name}" in m and reason in m]
        assert len(hits) == 1, (name, refused)
    console = out.getvalue()
    for name, reason in expected.items():
        assert sum(reason in line and name in line for line in console.splitlines()) == 1, (
            name,
            console,
        )
    assert "notes\\x1b[31m.txt" in console and "\x1b" not in console
    assert sum("(empty) failed at intake: empty" in line for line in console.splitlines()) == 1
