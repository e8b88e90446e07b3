"""Fixtures for the CLI tests: a real config file, a real upgraded SQLite database."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from mqi_communicator.cli import main
from mqi_communicator.migrations.api import upgrade


def local_config(root: Path, **overrides: Any) -> dict[str, Any]:
    """A config for the local transport + local scheduler under ``root``."""
    cfg: dict[str, Any] = {
        "watch_dir": "watch",
        "results_dir": "results",
        "database_url": f"sqlite:///{(root / 'mqi.db').as_posix()}",
        "command": ["sh", "-c", "mkdir -p output && echo dose > output/dose.txt"],
        "intake": {"quiescence_s": 0.2, "scan_interval_s": 5},
        "engine": {"poll_interval_s": 0.2, "kill_confirm_s": 10},
        "hosts": {
            "local": {
                "transport": "local",
                "scheduler": {"kind": "local", "kill_grace_s": 1},
                "remote_base": "remote",
            }
        },
        "gpus": [
            {"name": "local/gpu0", "host": "local", "cuda_devices": "0"},
            {"name": "local/gpu1", "host": "local", "cuda_devices": "1"},
        ],
    }
    cfg.update(overrides)
    return cfg


def write_config(root: Path, cfg: dict[str, Any], name: str = "mqi.yaml") -> Path:
    """Write ``cfg`` as YAML, create its folders, upgrade its database; return the path."""
    for d in ("watch", "results", "remote"):
        (root / d).mkdir(exist_ok=True)
    path = root / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A valid local config with an upgraded SQLite database."""
    cfg = local_config(tmp_path)
    path = write_config(tmp_path, cfg)
    upgrade(cfg["database_url"])
    return path


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Invoke the real ``mqi-communicator`` group in-process; stderr kept separate."""
    monkeypatch.delenv("MQI_CONFIG", raising=False)
    monkeypatch.delenv("MQI_DATABASE_URL", raising=False)

    def invoke(*args: str) -> Result:
        runner = CliRunner()
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def closed_port() -> int:
    """A loopback TCP port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
