"""``doctor`` against the real loopback sshd with the Pueue stand-in behind it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from mqi_communicator.migrations.api import upgrade
from tests.infra.pueue import PueueStandin, pueue_daemon
from tests.infra.sshd import SshServer

from .conftest import local_config, write_config

Cli = Callable[..., Result]

pytestmark = pytest.mark.ssh


@pytest.fixture
def pueue() -> Iterator[PueueStandin]:
    with pueue_daemon(4) as standin:
        yield standin


def _ssh_config(
    tmp_path: Path, sshd: SshServer, pueue: PueueStandin, group: str, **host: Any
) -> Path:
    cfg = local_config(tmp_path)
    cfg["hosts"] = {
        "gpu-server": {
            "transport": "ssh",
            "hostname": sshd.host,
            "port": sshd.port,
            "user": sshd.user,
            "key_file": str(sshd.key_path),
            "known_hosts": str(sshd.known_hosts),
            "connect_timeout_s": 5,
            "scheduler": {"kind": "pueue", "pueue_command": pueue.command},
            "remote_base": str(tmp_path / "remote-base"),
            **host,
        }
    }
    cfg["gpus"] = [{"name": "gpu-server/gpu0", "host": "gpu-server", "pueue_group": group}]
    path = write_config(tmp_path, cfg)
    upgrade(cfg["database_url"])
    return path


def test_doctor_ssh_pueue_all_ok(
    cli: Cli, tmp_path: Path, sshd: SshServer, pueue: PueueStandin
) -> None:
    path = _ssh_config(tmp_path, sshd, pueue, "default")
    result = cli("doctor", "--config", str(path), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = {(r["host"], r["check"]): r for r in json.loads(result.stdout)}
    assert {k: r["status"] for k, r in rows.items()} == {
        ("database", "schema at head"): "OK",
        ("gpu-server", "connect"): "OK",
        ("gpu-server", "scheduler"): "OK",
        ("gpu-server", "remote_base writable"): "OK",
    }
    assert "host key verified" in rows[("gpu-server", "connect")]["reason"]
    assert "default" in rows[("gpu-server", "scheduler")]["reason"]
    assert (tmp_path / "remote-base").is_dir()
    assert list((tmp_path / "remote-base").iterdir()) == []  # the probe dir was removed


def test_doctor_reports_a_missing_pueue_group(
    cli: Cli, tmp_path: Path, sshd: SshServer, pueue: PueueStandin
) -> None:
    path = _ssh_config(tmp_path, sshd, pueue, "gpu7")
    result = cli("doctor", "--config", str(path))
    assert result.exit_code == 1
    line = next(ln for ln in result.stdout.splitlines() if "scheduler" in ln)
    assert "FAIL" in line and "gpu7" in line


def test_doctor_refuses_an_unknown_host_key(
    cli: Cli, tmp_path: Path, sshd: SshServer, pueue: PueueStandin
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    path = _ssh_config(tmp_path, sshd, pueue, "default", known_hosts=str(empty))
    result = cli("doctor", "--config", str(path), "--json")
    assert result.exit_code == 1
    rows = {(r["host"], r["check"]): r for r in json.loads(result.stdout)}
    connect = rows[("gpu-server", "connect")]
    assert connect["status"] == "FAIL"
    assert "HostKeyError" in connect["reason"]
    assert rows[("gpu-server", "scheduler")]["status"] == "SKIP"
