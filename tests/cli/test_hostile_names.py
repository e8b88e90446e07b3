"""A case folder named with escape sequences and line breaks never reaches a log or a screen raw."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mqi_communicator.migrations.api import upgrade
from mqi_communicator.persistence import Store
from mqi_communicator.statemachine import CaseState
from mqi_communicator.textsafe import printable
from tests.migrations.cli_run import console_script, run_cli

from .conftest import local_config, write_config

BOUND_S = 60.0  # an upper bound for waiting, not a speed assertion
#: Recolours the terminal, forges a log line, overwrites the line, reverses text.
HOSTILE = "evil\x1b[31mRED\x1b[0m\n2026-01-01 00:00:00 INFO forged: all fine\rX\u202eYZ\x07"
ESCAPED = "evil\\x1b[31mRED\\x1b[0m\\n2026-01-01 00:00:00 INFO forged: all fine\\rX\\u202eYZ\\x07"
RAW = ("\x1b", "\r", "\u202e", "\x07")


def _wait_for(what: str, check: Callable[[], bool]) -> None:
    end = time.monotonic() + BOUND_S
    while not check():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.1)


def _no_raw(text: str, where: str) -> None:
    for ch in RAW:
        assert ch not in text, (where, repr(ch))
    assert not any(line.startswith("2026-01-01") for line in text.splitlines()), where


def test_printable_escapes_only_what_is_unsafe() -> None:
    assert printable(HOSTILE) == ESCAPED
    assert printable("환자 7/beam 1 C:\\QA\\case") == "환자 7/beam 1 C:\\QA\\case"
    assert printable("a\tb\x7f\x9b\udcff\u2028") == "a\\tb\\x7f\\x9b\\udcff\\u2028"
    assert printable("line 1\nline 2\x1b", keep_newlines=True) == "line 1\nline 2\\x1b"


@pytest.mark.skipif(os.name == "nt", reason="Windows folder names cannot hold these characters")
def test_a_hostile_folder_through_intake_run_log_and_cases(tmp_path: Path) -> None:
    cfg = local_config(tmp_path, log={"file": "logs/run.log"})
    path = write_config(tmp_path, cfg)
    upgrade(cfg["database_url"])
    out_file = tmp_path / "run.out"
    with out_file.open("w", encoding="utf-8") as out:
        engine = subprocess.Popen(
            [console_script(), "run", "--config", str(path)], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            staging = tmp_path / "watch" / ".incoming"
            staging.mkdir()
            (staging / "plan.dcm").write_bytes(b"DICM" * 100)
            staging.rename(tmp_path / "watch" / HOSTILE)

            def completed() -> bool:
                with Store.open(cfg["database_url"]) as store:
                    cases = store.list_cases()
                return bool(cases) and cases[0].status is CaseState.COMPLETED

            _wait_for("the hostile case to complete", completed)
        finally:
            engine.send_signal(signal.SIGTERM)
            assert engine.wait(timeout=BOUND_S) == 0
    console = out_file.read_text(encoding="utf-8")
    log = (tmp_path / "logs" / "run.log").read_text(encoding="utf-8")
    for where, text in (("run console", console), ("log file", log)):
        _no_raw(text, where)
        assert ESCAPED in text, where
    assert f"case 1 registered: {tmp_path / 'watch'}/{ESCAPED}" in log

    listed = run_cli("cases", "list", "--config", str(path))
    shown = run_cli("cases", "show", "1", "--config", str(path))
    for where, result in (("cases list", listed), ("cases show", shown)):
        assert result.returncode == 0, result.stderr
        _no_raw(result.stdout, where)
        assert ESCAPED in result.stdout, where
    as_json = run_cli("cases", "show", "1", "--json", "--config", str(path))
    assert "\x1b" not in as_json.stdout and "\u202e" not in as_json.stdout
    assert json.loads(as_json.stdout)["case"]["name"] == HOSTILE  # data kept exactly
    # The results folder keeps the real name: only what is shown is escaped.
    assert (tmp_path / "results" / HOSTILE / "dose.txt").read_text() == "dose\n"
    assert yaml.safe_load(path.read_text())["watch_dir"] == "watch"
