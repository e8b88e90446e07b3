"""``cases`` and ``gpus`` commands on a real SQLite database (no engine running)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml
from click.testing import Result

from mqi_communicator.persistence import Store

Cli = Callable[..., Result]


def _register(config_file: Path, name: str) -> int:
    cfg = yaml.safe_load(config_file.read_text())
    case_dir = config_file.parent / "elsewhere" / name
    case_dir.mkdir(parents=True)
    (case_dir / "plan.dcm").write_bytes(b"DICM")
    with Store.open(cfg["database_url"]) as store:
        case, created = store.register_case(str(case_dir), datetime.now(UTC))
    assert created
    return case.id


def test_cancel_then_retry_a_waiting_case(cli: Cli, config_file: Path) -> None:
    cfg = str(config_file)
    cid = _register(config_file, "case A")
    listed = json.loads(cli("cases", "list", "--json", "--config", cfg).stdout)
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "submitted")]

    cancelled = cli("cases", "cancel", str(cid), "--config", cfg)
    assert cancelled.exit_code == 0, cancelled.stderr
    assert f"case {cid} (case A): cancelled" in cancelled.stdout

    again = cli("cases", "cancel", str(cid), "--config", cfg)
    assert again.exit_code == 1
    assert "cancelled" in again.stderr and "Traceback" not in again.stderr

    retried = cli("cases", "retry", str(cid), "--config", cfg)
    assert retried.exit_code == 0, retried.stderr
    assert "submitted, attempt 2" in retried.stdout

    shown = json.loads(cli("cases", "show", str(cid), "--json", "--config", cfg).stdout)
    assert shown["case"]["attempt"] == 2
    assert [(h["from_state"], h["to_state"], h["trigger"]) for h in shown["history"]] == [
        ("-", "submitted", "register"),
        ("submitted", "cancelled", "cancel"),
        ("cancelled", "submitted", "retry"),
    ]
    text = cli("cases", "show", str(cid), "--config", cfg).stdout
    assert "history (3 transitions)" in text
    assert "submitted -> cancelled" in text


def test_retry_of_a_live_case_is_refused(cli: Cli, config_file: Path) -> None:
    cid = _register(config_file, "b")
    result = cli("cases", "retry", str(cid), "--config", str(config_file))
    assert result.exit_code == 1
    assert "retry" in result.stderr and "submitted" in result.stderr


def test_unknown_case_is_an_error(cli: Cli, config_file: Path) -> None:
    for args in (["show", "999"], ["cancel", "999"], ["retry", "999"]):
        result = cli("cases", *args, "--config", str(config_file))
        assert result.exit_code == 1
        assert "999" in result.stderr


def test_cases_list_filters_by_state(cli: Cli, config_file: Path) -> None:
    cfg = str(config_file)
    a = _register(config_file, "a")
    b = _register(config_file, "b")
    assert cli("cases", "cancel", str(b), "--config", cfg).exit_code == 0
    only = json.loads(
        cli("cases", "list", "--state", "cancelled", "--json", "--config", cfg).stdout
    )
    assert [c["id"] for c in only] == [b]
    both = cli("cases", "list", "--state", "cancelled", "--state", "submitted", "--config", cfg)
    lines = both.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "STATE"]
    assert [ln.split()[0] for ln in lines[2:]] == [str(a), str(b)]
    bad = cli("cases", "list", "--state", "bogus", "--config", cfg)
    assert bad.exit_code == 2


def test_gpus_offline_and_online(cli: Cli, config_file: Path) -> None:
    cfg = str(config_file)
    before = json.loads(cli("gpus", "list", "--json", "--config", cfg).stdout)
    assert [(g["name"], g["status"]) for g in before] == [
        ("local/gpu0", "available"),
        ("local/gpu1", "available"),
    ]
    off = cli("gpus", "offline", "local/gpu1", "--config", cfg)
    assert off.exit_code == 0, off.stderr
    assert "local/gpu1: offline" in off.stdout
    mid = {g["name"]: g for g in json.loads(cli("gpus", "list", "--json", "--config", cfg).stdout)}
    assert mid["local/gpu1"]["status"] == "offline"
    assert mid["local/gpu1"]["offline_requested"] is True
    assert mid["local/gpu0"]["status"] == "available"
    status = json.loads(cli("status", "--json", "--config", cfg).stdout)
    assert status["gpus"]["offline"] == 1 and status["gpus"]["available"] == 1
    table = cli("gpus", "list", "--config", cfg).stdout
    assert any("local/gpu1" in ln and "offline" in ln for ln in table.splitlines())
    on = cli("gpus", "online", "local/gpu1", "--config", cfg)
    assert on.exit_code == 0, on.stderr
    assert "local/gpu1: available" in on.stdout
    after = json.loads(cli("gpus", "list", "--json", "--config", cfg).stdout)
    assert {g["status"] for g in after} == {"available"}


def test_unknown_gpu_is_an_error(cli: Cli, config_file: Path) -> None:
    result = cli("gpus", "offline", "nope/gpu9", "--config", str(config_file))
    assert result.exit_code == 1
    assert "nope/gpu9" in result.stderr
