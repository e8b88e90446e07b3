"""``demo`` end to end through the real console script, then the read commands on its data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

Cli = Callable[..., Result]


def console_script() -> list[str]:
    """The installed ``mqi-communicator`` entry point (as a user runs it)."""
    exe = Path(sys.executable).parent / "mqi-communicator"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mqi-communicator")
    if found:
        return [found]
    return [sys.executable, "-c", "from mqi_communicator.cli import main; main()"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """Run ``mqi-communicator demo --keep`` once; yield (workspace, stdout)."""
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("MQI_CONFIG", None)
    env.pop("MQI_DATABASE_URL", None)
    proc = subprocess.run(
        [*console_script(), "demo", "--keep", "--seconds", "1"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    m = re.search(r"workspace kept: (\S+)", proc.stdout)
    assert m, proc.stdout
    ws = Path(m.group(1))
    assert ws.parent == tmp
    yield ws, proc.stdout
    shutil.rmtree(ws, ignore_errors=True)


def test_demo_completes_three_cases_with_results(demo_run: tuple[Path, str]) -> None:
    ws, out = demo_run
    assert "all 3 cases completed" in out
    for i in (1, 2, 3):
        name = f"demo_case_{i:02d}"
        # Every case is shown moving through the states.
        for move in (
            "submitted -> submitting",
            "submitting -> running",
            "running -> retrieving",
            "retrieving -> completed",
        ):
            assert re.search(rf"\({name}\): {move}", out), (name, move)
        results = ws / "results" / name
        assert (results / "dose.raw").stat().st_size == 4096
        summary = json.loads((results / "summary.json").read_text())
        assert re.fullmatch(r"mqic_case_\d+_a1", summary["case"])  # the uploaded copy ran
        assert summary["cuda_visible_devices"] in {"0", "1"}
        assert "RTPLAN.dcm" in summary["inputs"]
        stamp = json.loads((results / ".mqi-result.json").read_text())
        assert stamp["attempt"] == 1
    # The summary table lists every case as completed with its result files.
    table = out[out.index("RESULT FILES") :]
    assert table.count("completed") >= 3
    assert "dose.raw, summary.json" in table


def test_demo_deletes_its_workspace_by_default(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [*console_script(), "demo", "--cases", "1", "--seconds", "0.2", "--gpus", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all 1 cases completed" in proc.stdout
    assert "deleted" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_status_after_demo(cli: Cli, demo_run: tuple[Path, str]) -> None:
    ws, _ = demo_run
    cfg = str(ws / "mqi-communicator.yaml")
    result = cli("status", "--config", cfg, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["cases"]["completed"] == 3
    assert sum(data["cases"].values()) == 3
    assert data["gpus"] == {"available": 2, "assigned": 0, "zombie": 0, "offline": 0}
    assert data["zombies"] == []
    text = cli("status", "--config", cfg)
    assert text.exit_code == 0
    assert re.search(r"completed\s+3", text.stdout)
    assert "zombies: none" in text.stdout


def test_cases_list_json_after_demo(cli: Cli, demo_run: tuple[Path, str]) -> None:
    ws, _ = demo_run
    cfg = str(ws / "mqi-communicator.yaml")
    result = cli("cases", "list", "--json", "--config", cfg)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["demo_case_01", "demo_case_02", "demo_case_03"]
    assert {r["status"] for r in rows} == {"completed"}
    for r in rows:
        assert r["completed_at"] is not None
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", r["completed_at"])
    only = cli("cases", "list", "--json", "--state", "failed", "--config", cfg)
    assert json.loads(only.stdout) == []


def test_cases_show_has_history_with_evidence(cli: Cli, demo_run: tuple[Path, str]) -> None:
    ws, _ = demo_run
    cfg = str(ws / "mqi-communicator.yaml")
    result = cli("cases", "show", "1", "--json", "--config", cfg)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["case"]["status"] == "completed"
    moves = [(h["entity"], h["trigger"]) for h in data["history"]]
    for step in ("register", "claim", "confirm_submitted", "job_succeeded", "retrieved"):
        assert ("case", step) in moves, step
    assert ("gpu", "assign") in moves and ("gpu", "release") in moves
    release = next(h for h in data["history"] if h["trigger"] == "release")
    assert release["evidence"]["kind"] in {"observed_terminal", "confirmed_absent"}
    assert release["evidence"]["label"] == data["case"]["label"]
    text = cli("cases", "show", "1", "--config", cfg)
    assert text.exit_code == 0
    assert "history (" in text.stdout
    assert "running -> retrieving" in text.stdout
    assert "results_verified" in text.stdout
