"""``run`` as a real subprocess: live progress, a case to completed, SIGTERM, one engine only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from mqi_communicator.migrations.api import upgrade
from mqi_communicator.persistence import Store
from mqi_communicator.statemachine import CaseState

from .conftest import local_config, write_config
from .test_demo import console_script

Cli = Callable[..., Result]
BOUND_S = 60.0  # an upper bound for waiting, not a speed assertion


def _wait_for(what: str, check: Callable[[], bool]) -> None:
    end = time.monotonic() + BOUND_S
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def run_config(tmp_path: Path) -> Path:
    cfg = local_config(
        tmp_path,
        log={"file": "logs/run.log", "timezone": "Asia/Seoul"},
        command=["sh", "-c", "sleep 0.5; mkdir -p output; echo dose > output/dose.txt"],
    )
    path = write_config(tmp_path, cfg)
    upgrade(cfg["database_url"])
    return path


@pytest.fixture
def engine(run_config: Path) -> Iterator[subprocess.Popen[str]]:
    out = (run_config.parent / "run.out").open("w")
    env = {k: v for k, v in os.environ.items() if k not in ("MQI_CONFIG", "MQI_DATABASE_URL")}
    proc = subprocess.Popen(
        [*console_script(), "run", "--config", str(run_config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    out.close()


def _output(run_config: Path) -> str:
    return (run_config.parent / "run.out").read_text()


def test_run_completes_a_case_and_stops_on_sigterm(
    run_config: Path, engine: subprocess.Popen[str]
) -> None:
    _wait_for("the start line", lambda: "mqi-communicator running" in _output(run_config))
    root = run_config.parent
    staging = root / "watch" / ".incoming"
    staging.mkdir()
    (staging / "plan.dcm").write_bytes(b"DICM" * 100)
    staging.rename(root / "watch" / "case one")
    url = yaml.safe_load(run_config.read_text())["database_url"]

    def completed() -> bool:
        with Store.open(url) as store:
            cases = store.list_cases()
        return bool(cases) and cases[0].status is CaseState.COMPLETED

    _wait_for("the case to complete", completed)
    assert (root / "results" / "case one" / "dose.txt").read_text() == "dose\n"

    # A second engine on the same SQLite database is refused, with a clear message.
    second = subprocess.run(
        [*console_script(), "run", "--once", "--config", str(run_config)],
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )
    assert second.returncode == 1
    assert "another engine is already running" in second.stderr
    assert "Traceback" not in second.stderr

    engine.send_signal(signal.SIGTERM)
    assert engine.wait(timeout=BOUND_S) == 0
    out = _output(run_config)
    assert "SIGTERM: stopping after the current step" in out
    assert out.rstrip().endswith("stopped")
    for move in ("new -> submitted", "submitted -> submitting", "running -> retrieving"):
        assert f"(case one): {move}" in out, move
    assert "(case one): retrieving -> completed (retrieved)" in out
    log = (root / "logs" / "run.log").read_text()
    assert "case 1 registered" in log
    assert "+0900" in log or "+09:00" in log or "KST" in log  # the configured time zone


def test_run_once_on_an_idle_database(cli: Cli, run_config: Path) -> None:
    result = cli("run", "--once", "--config", str(run_config))
    assert result.exit_code == 0, result.stderr
    assert "mqi-communicator running" in result.stdout


def test_run_refuses_an_old_schema(cli: Cli, tmp_path: Path) -> None:
    cfg = local_config(tmp_path, database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    path = write_config(tmp_path, cfg)
    (tmp_path / "empty.db").write_bytes(b"")  # exists, so it is not auto-created
    result = cli("run", "--once", "--config", str(path))
    assert result.exit_code == 2
    assert "db upgrade" in result.stderr


def test_cancel_and_retry_a_running_case_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    cfg = local_config(tmp_path, command=["sh", "-c", "sleep 60"])
    path = write_config(tmp_path, cfg)
    upgrade(cfg["database_url"])
    (tmp_path / "watch" / "long").mkdir()
    (tmp_path / "watch" / "long" / "plan.dcm").write_bytes(b"DICM")
    out = (tmp_path / "run.out").open("w")
    proc = subprocess.Popen(
        [*console_script(), "run", "--config", str(path)], stdout=out, stderr=subprocess.STDOUT
    )
    try:

        def status_is(state: str, attempt: int) -> Callable[[], bool]:
            def check() -> bool:
                with Store.open(cfg["database_url"]) as store:
                    cases = store.list_cases()
                return bool(cases) and (cases[0].status.value, cases[0].attempt) == (
                    state,
                    attempt,
                )

            return check

        for attempt in (1, 2):
            _wait_for(f"attempt {attempt} running", status_is("running", attempt))
            result = cli("cases", "cancel", "1", "--config", str(path))
            assert result.exit_code == 0, result.stderr
            assert "cancel requested while running" in result.stdout
            _wait_for(f"attempt {attempt} cancelled", status_is("cancelled", attempt))
            if attempt == 1:
                retried = cli("cases", "retry", "1", "--config", str(path))
                assert retried.exit_code == 0, retried.stderr
                assert "submitted, attempt 2" in retried.stdout
        shown = json.loads(cli("cases", "show", "1", "--json", "--config", str(path)).stdout)
        releases = [h for h in shown["history"] if h["trigger"] == "release"]
        assert len(releases) == 2
        for h in releases:  # freed only on evidence that the killed job is gone
            assert h["evidence"]["kind"] in {"kill_confirmed", "observed_terminal"}
        gpus = json.loads(cli("gpus", "list", "--json", "--config", str(path)).stdout)
        assert {g["status"] for g in gpus} == {"available"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=BOUND_S) == 0
        out.close()
