"""A legacy job whose Pueue group no configured GPU has: it waits, visibly and reported."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import yaml
from click.testing import Result

from mqi_communicator.migrations import api
from mqi_communicator.statemachine import EvidenceKind
from tests.cli.conftest import local_config, write_config
from tests.migrations.test_legacy_adoption import LEGACY_DDL

Cli = Callable[..., Result]
T = "2024-03-05T14:22:10+09:00"


def _adopted(tmp_path: Path) -> Path:
    cfg = local_config(tmp_path)
    db = Path(cfg["database_url"].removeprefix("sqlite:///"))
    con = sqlite3.connect(db)
    con.executescript(LEGACY_DDL)
    con.execute(
        "INSERT INTO cases VALUES (9, '/data/QA/case 9', 'failed', 5, 'gpuX', 4, ?, ?, ?)",
        (T, T, T),
    )
    con.execute("INSERT INTO gpu_resources VALUES ('gpuX', 'zombie', 9)")
    con.commit()
    con.close()
    api.upgrade(cfg["database_url"])
    return write_config(tmp_path, cfg)


def test_unresolvable_legacy_group_is_reported_and_waits(cli: Cli, tmp_path: Path) -> None:
    path = _adopted(tmp_path)
    cfg = str(path)
    checked = cli("check-config", "--config", cfg)
    assert checked.exit_code == 2
    assert "'gpuX'" in checked.stderr and "pueue_group" in checked.stderr
    doctor = json.loads(cli("doctor", "--json", "--config", cfg).stdout)
    (row,) = [r for r in doctor if r["check"] == "legacy jobs"]
    assert row["status"] == "FAIL" and "'gpuX'" in row["reason"]

    for _ in range(2):  # each start (any command) resolves again; the note is written once
        listed = json.loads(cli("gpus", "list", "--json", "--config", cfg).stdout)
    (gpu,) = [g for g in listed if g["name"] == "gpuX"]
    assert (gpu["status"], gpu["host"], gpu["quarantined_case_id"]) == ("zombie", None, 9)
    assert (gpu["job_label"], gpu["job_origin"]) == ("mqic_case_9", "legacy")
    db = yaml.safe_load(path.read_text())["database_url"].removeprefix("sqlite:///")
    notes = sqlite3.connect(db).execute(
        "SELECT detail FROM case_transitions WHERE gpu_name = 'gpuX' AND trigger = 'note'"
    )
    (note,) = [n for (n,) in notes.fetchall()]
    assert "waits" in note and "'gpuX'" in note

    # The audited way out works for an adopted zombie too.
    done = cli(
        "gpus",
        "release",
        "gpuX",
        "--confirm-job-gone",
        "--reason",
        "old server gone",
        "--config",
        cfg,
    )
    assert done.exit_code == 0, done.stderr
    shown = json.loads(cli("gpus", "list", "--json", "--config", cfg).stdout)
    (gpu,) = [g for g in shown if g["name"] == "gpuX"]
    assert (gpu["status"], gpu["quarantined_case_id"], gpu["job_origin"]) == (
        "available",
        None,
        None,
    )
    history = json.loads(cli("cases", "show", "9", "--json", "--config", cfg).stdout)
    assert history["case"]["status"] == "failed"
    ev = (
        sqlite3.connect(db)
        .execute("SELECT evidence FROM case_transitions WHERE trigger = 'operator_release'")
        .fetchone()[0]
    )
    assert json.loads(ev)["kind"] == EvidenceKind.OPERATOR_ATTESTED.value
    assert json.loads(ev)["label"] == "mqic_case_9"
    # Nothing is left to report.
    assert cli("check-config", "--config", cfg).exit_code == 0
