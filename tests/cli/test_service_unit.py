"""``service unit``: a unit systemd accepts, whose ExecStart really starts the engine."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mqi_communicator.cli.service_unit import engine_stop_bound_s, systemd_quote
from mqi_communicator.config import load_config
from tests.e2e.crash_support import console_script

from .test_case_log import write_config


def unit_text(config: Path, *extra: str) -> str:
    out = subprocess.run(
        [*console_script(), "service", "unit", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def parse(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)
    return cp


@pytest.mark.parametrize("web", [False, True])
def test_unit_is_valid_and_its_exec_start_runs(tmp_path: Path, web: bool) -> None:
    root = tmp_path / "site with space"
    root.mkdir()
    config = write_config(root, root / "go")
    text = unit_text(config, *(["--web"] if web else []))
    svc = parse(text)["Service"]
    assert svc["Restart"] == "on-failure" and svc["KillMode"] == "mixed"
    argv = shlex.split(svc["ExecStart"])
    assert argv[:3] == [sys.executable, "-m", "mqi_communicator"]
    assert argv[3] == ("web" if web else "run")
    assert argv[argv.index("--config") + 1] == str(config.resolve())
    if not web:
        bound = engine_stop_bound_s(load_config(config))
        assert int(svc["TimeoutStopSec"]) >= bound > 3600  # the default transfer timeout
    if shutil.which("systemd-analyze"):
        unit = tmp_path / ("mqi-web.service" if web else "mqi-communicator.service")
        unit.write_text(text)
        check = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        assert check.returncode == 0 and "mqi" not in check.stderr, check.stderr
    if not web:
        # The very command systemd would start: one tick on this config, then exit
        # (`run` never creates the watch and results folders: a site makes them).
        for folder in ("watch_dir", "results_dir"):
            getattr(load_config(config), folder).mkdir(parents=True, exist_ok=True)
        ran = subprocess.run(
            [*argv, "--once"],
            cwd=svc["WorkingDirectory"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        assert (root / "mqi-communicator.db").exists()


def test_systemd_quoting() -> None:
    assert systemd_quote("/usr/bin/python3") == "/usr/bin/python3"
    assert systemd_quote("/srv/my cases/mqi.yaml") == '"/srv/my cases/mqi.yaml"'
    assert systemd_quote('/a/"b"$x%i') == '"/a/\\"b\\"$$x%%i"'
