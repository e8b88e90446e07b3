"""``top --once`` and ``status`` start without the web, SSH, watcher or migration stacks.

Every CLI start used to import every command and, through them, Starlette, paramiko,
Fabric, watchdog and Alembic (about 1.9 s of a 2.2 s ``top --once`` under load). Which
modules a real process loads is checked with ``python -X importtime``; the time itself
is measured by bench/bench_top.py, not asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .test_case_log import write_config

#: Stacks that only some commands need (the web console, SSH hosts, the engine's
#: intake, schema changes, the live screen).
HEAVY = {
    "alembic",
    "fabric",
    "invoke",
    "jinja2",
    "paramiko",
    "prometheus_client",
    "rich",
    "starlette",
    "uvicorn",
    "watchdog",
}


def loaded(config: Path, *command: str) -> set[str]:
    """Top-level packages a real ``python -m mqi_communicator COMMAND`` process imports."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mqi_communicator", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=config.parent,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    names = set()
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("command", [["top", "--once"], ["status"]])
def test_read_only_commands_load_no_heavy_stack(tmp_path: Path, command: list[str]) -> None:
    config = write_config(tmp_path, tmp_path / "go")
    # A database at head, made once by a command that may (not the one measured).
    db = str(tmp_path / "mqi-communicator.db")  # the config's default database
    made = subprocess.run(
        [sys.executable, "-m", "mqi_communicator", "db", "upgrade", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    got = loaded(config, *command, "--config", str(config))
    assert "sqlalchemy" in got, "the measurement saw no imports at all"
    assert not got & HEAVY, f"{' '.join(command)} imported {sorted(got & HEAVY)}"
