"""``check-config`` and ``doctor`` on real files, the real local host and a closed SSH port."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest
from click.testing import Result

from mqi_communicator.migrations.api import upgrade

from .conftest import closed_port, local_config, write_config

Cli = Callable[..., Result]


@pytest.mark.parametrize("example", ["local.yaml", "pueue-ssh.yaml", "slurm-ssh.yaml"])
def test_check_config_accepts_the_shipped_examples(cli: Cli, tmp_path: Path, example: str) -> None:
    text = (resources.files("mqi_communicator") / "examples" / example).read_text("utf-8")
    path = tmp_path / example
    path.write_text(text, encoding="utf-8")
    result = cli("check-config", "--config", str(path))
    assert result.exit_code == 0, result.stderr
    assert f"{path}: OK" in result.stdout


def test_check_config_names_the_wrong_key_and_the_file(cli: Cli, tmp_path: Path) -> None:
    cfg = local_config(tmp_path)
    cfg["engine"] = {"poll_intervall_s": 3}
    path = write_config(tmp_path, cfg, "typo.yaml")
    result = cli("check-config", "--config", str(path))
    assert result.exit_code == 2
    assert "typo.yaml" in result.stderr
    assert "engine.poll_intervall_s" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_config_reads_mqi_config(
    cli: Cli, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MQI_CONFIG", str(config_file))
    result = cli("check-config")
    assert result.exit_code == 0, result.stderr
    assert str(config_file) in result.stdout


@pytest.mark.parametrize(
    "command",
    [["check-config"], ["doctor"], ["status"], ["cases", "list"], ["gpus", "list"], ["run"]],
)
def test_missing_config_is_a_usage_error(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./mqi-communicator.yaml here
    result = cli(*command)
    assert result.exit_code == 2
    assert "config file not found: mqi-communicator.yaml" in result.stderr
    assert "--config" in result.stderr and "MQI_CONFIG" in result.stderr
    missing = tmp_path / "nope.yaml"
    result = cli(*command, "--config", str(missing))
    assert result.exit_code == 2
    assert f"config file not found: {missing}" in result.stderr


def test_doctor_local_host_all_ok(cli: Cli, config_file: Path) -> None:
    result = cli("doctor", "--config", str(config_file), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    checks = {(r["host"], r["check"]): r["status"] for r in rows}
    assert checks == {
        ("database", "schema at head"): "OK",
        ("local", "connect"): "OK",
        ("local", "scheduler"): "OK",
        ("local", "remote_base writable"): "OK",
    }
    table = cli("doctor", "--config", str(config_file))
    assert table.exit_code == 0
    assert "remote_base writable" in table.stdout and "FAIL" not in table.stdout


def test_doctor_fails_on_unwritable_base_and_old_schema(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cfg = local_config(tmp_path)
    cfg["hosts"]["local"]["remote_base"] = str(blocker / "sub")
    path = write_config(tmp_path, cfg)
    (tmp_path / "mqi.db").write_bytes(b"")  # a database without the schema
    result = cli("doctor", "--config", str(path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    base = next(ln for ln in lines if "remote_base writable" in ln)
    assert "FAIL" in base and str(blocker) in base
    db = next(ln for ln in lines if ln.startswith("database"))
    assert "FAIL" in db and "db upgrade" in db
    assert "check(s) failed" in result.stderr


def test_doctor_ssh_closed_port_fails_with_reason(cli: Cli, tmp_path: Path) -> None:
    cfg = local_config(tmp_path)
    port = closed_port()
    known = tmp_path / "known_hosts"
    known.write_text("")
    cfg["hosts"] = {
        "gpu-server": {
            "transport": "ssh",
            "hostname": "127.0.0.1",
            "port": port,
            "user": "nobody",
            "known_hosts": str(known),
            "connect_timeout_s": 3,
            "scheduler": {"kind": "pueue"},
            "remote_base": "/tmp/mqi-doctor-never",
        }
    }
    cfg["gpus"] = [{"name": "gpu-server/gpu0", "host": "gpu-server", "pueue_group": "gpu0"}]
    path = write_config(tmp_path, cfg)
    upgrade(cfg["database_url"])
    result = cli("doctor", "--config", str(path), "--json")
    assert result.exit_code == 1
    rows = {(r["host"], r["check"]): r for r in json.loads(result.stdout)}
    assert rows[("database", "schema at head")]["status"] == "OK"
    connect = rows[("gpu-server", "connect")]
    assert connect["status"] == "FAIL"
    assert "HostUnreachableError" in connect["reason"]
    assert str(port) in connect["reason"]
    assert rows[("gpu-server", "scheduler")]["status"] == "SKIP"
    assert rows[("gpu-server", "remote_base writable")]["status"] == "SKIP"


def test_doctor_does_not_create_a_missing_sqlite_file(cli: Cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, local_config(tmp_path))
    result = cli("doctor", "--config", str(path))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "not created yet" in result.stdout
    assert not (tmp_path / "mqi.db").exists()
