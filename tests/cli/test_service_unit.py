"""``service unit``: a unit systemd accepts, whose ExecStart really starts the engine."""

from __future__ import annotations

import configparser
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mqi_communicator.cli.service_unit import engine_stop_bound_s, systemd_quote
from mqi_communicator.config import load_config
from tests.e2e.crash_support import console_script
from tests.infra.sshd import free_port

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
    # This environment's interpreter (python or python3: both name it, by how pip wrote
    # the console script), run as a module.
    assert Path(argv[0]).parent == Path(sys.executable).parent
    assert Path(argv[0]).name.startswith("python") and argv[1:3] == ["-m", "mqi_communicator"]
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


def test_web_unit_exec_start_serves_and_the_engine_starts_after_it(tmp_path: Path) -> None:
    # systemd starts both units at once: the web console may come first on a fresh site.
    root = tmp_path / "fresh site"
    root.mkdir()
    config = write_config(root, root / "go")
    for folder in ("watch_dir", "results_dir"):  # a site makes them; `run` never does
        getattr(load_config(config), folder).mkdir(parents=True, exist_ok=True)
    svc = parse(unit_text(config, "--web"))["Service"]
    port = free_port()
    argv = [*shlex.split(svc["ExecStart"]), "--port", str(port)]
    web = subprocess.Popen(
        argv, cwd=svc["WorkingDirectory"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert web.poll() is None, web.communicate()[1].decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    page = r.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "the web console never answered"
                time.sleep(0.1)
        assert "local/gpu0" in page
    finally:
        web.send_signal(signal.SIGTERM)  # what KillMode=mixed sends first
        _, err = web.communicate(timeout=30)
    # uvicorn shuts down, then re-raises the signal; systemd counts SIGTERM as clean.
    assert web.returncode in (0, -signal.SIGTERM), err.decode()
    assert b"Finished server process" in err, err.decode()
    ran = subprocess.run(
        [*console_script(), "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr


def test_systemd_quoting() -> None:
    assert systemd_quote("/usr/bin/python3") == "/usr/bin/python3"
    assert systemd_quote("/srv/my cases/mqi.yaml") == '"/srv/my cases/mqi.yaml"'
    assert systemd_quote('/a/"b"$x%i') == '"/a/\\"b\\"$$x%%i"'
