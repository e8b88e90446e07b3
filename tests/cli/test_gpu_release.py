"""``gpus release NAME --confirm-job-gone --reason`` and ``Communicator.release_zombie``.

A real SQLite database whose GPU became a zombie through the store's own steps (claim,
submit, a kill that was never confirmed), as the engine leaves it.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from mqi_communicator import Communicator, EvidenceKind, GpuState, load_config
from mqi_communicator.errors import InvalidTransitionError
from mqi_communicator.persistence import Store
from mqi_communicator.statemachine import Evidence

Cli = Callable[..., Result]
GPU = "local/gpu0"


def _zombie(config_file: Path) -> int:
    """Case ``stuck`` ran on local/gpu0 and its kill was never confirmed: a zombie."""
    cfg = yaml.safe_load(config_file.read_text())
    case_dir = config_file.parent / "elsewhere" / "stuck"
    case_dir.mkdir(parents=True)
    now = datetime.now(UTC)
    with Store.open(cfg["database_url"]) as store:
        store.sync_gpus([(GPU, "local"), ("local/gpu1", "local")], now)
        case, _ = store.register_case(str(case_dir), now)
        claimed = store.claim(case.id, now, lambda c, g: ("mqic-1-a1", "/r/1"), [GPU])
        assert claimed is not None
        store.apply(case.id, "confirm_submitted", None, None, evidence=None, now=now, job_id="7")
        lost = Evidence(EvidenceKind.KILL_UNCONFIRMED, "mqic-1-a1", now, detail="timeout")
        store.apply(case.id, "fail", GPU, "quarantine", evidence=lost, now=now)
    return case.id


def test_gpus_list_and_status_show_the_zombies_case(cli: Cli, config_file: Path) -> None:
    cid = _zombie(config_file)
    cfg = str(config_file)
    (row,) = [
        g
        for g in json.loads(cli("gpus", "list", "--json", "--config", cfg).stdout)
        if g["name"] == GPU
    ]
    assert (row["status"], row["case_id"], row["quarantined_case_id"]) == ("zombie", None, cid)
    table = cli("gpus", "list", "--config", cfg).stdout
    assert "ZOMBIE OF CASE" in table
    (line,) = [ln for ln in table.splitlines() if ln.startswith(GPU)]
    assert line.split()[2:5] == ["zombie", "-", str(cid)]
    status = cli("status", "--config", cfg).stdout
    (zline,) = [ln for ln in status.splitlines() if ln.startswith(GPU)]
    assert zline.split()[:4] == [GPU, "local", str(cid), "mqic-1-a1"]
    (zjson,) = json.loads(cli("status", "--json", "--config", cfg).stdout)["zombies"]
    assert zjson["quarantined_case_id"] == cid


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--reason", "host reinstalled"],
        ["--confirm-job-gone"],
        ["--confirm-job-gone", "--reason", "  "],
    ],
)
def test_release_refuses_without_the_flag_and_a_reason(
    cli: Cli, config_file: Path, args: list[str]
) -> None:
    cid = _zombie(config_file)
    result = cli("gpus", "release", GPU, *args, "--config", str(config_file))
    assert result.exit_code == 2
    # It says what to check on the host first: the label, the job id, the directory.
    for needed in ("--confirm-job-gone", "--reason", "'mqic-1-a1'", "job id 7", "/r/1", str(cid)):
        assert needed in result.stderr, needed
    with Store.open(yaml.safe_load(config_file.read_text())["database_url"]) as store:
        assert store.get_gpu(GPU).status is GpuState.ZOMBIE
        assert not [t for t in store.history(gpu_name=GPU) if t.trigger == "operator_release"]


def test_release_frees_the_zombie_and_records_who_when_why(cli: Cli, config_file: Path) -> None:
    cid = _zombie(config_file)
    cfg = str(config_file)
    done = cli(
        "gpus",
        "release",
        GPU,
        "--confirm-job-gone",
        "--reason",
        "server reinstalled",
        "--config",
        cfg,
    )
    assert done.exit_code == 0, done.stderr
    assert f"gpu {GPU}: available" in done.stdout
    shown = json.loads(cli("gpus", "list", "--json", "--config", cfg).stdout)
    (row,) = [g for g in shown if g["name"] == GPU]
    assert (row["status"], row["quarantined_case_id"], row["job_label"]) == (
        "available",
        None,
        None,
    )
    with Store.open(yaml.safe_load(config_file.read_text())["database_url"]) as store:
        (audit,) = [t for t in store.history(gpu_name=GPU) if t.trigger == "operator_release"]
    assert (audit.from_state, audit.to_state) == ("zombie", "available")
    ev = audit.evidence
    assert ev is not None and ev.kind is EvidenceKind.OPERATOR_ATTESTED
    assert ev.detail == "server reinstalled" and ev.label == "mqic-1-a1" and ev.job_id == "7"
    assert ev.actor == f"{getpass.getuser()}@{socket.gethostname()}"
    assert abs((ev.observed_at - audit.at).total_seconds()) < 1
    assert f"case {cid}" in audit.detail and "server reinstalled" in audit.detail
    # Only zombies: the same release again (now available) is refused.
    again = cli("gpus", "release", GPU, "--confirm-job-gone", "--reason", "x", "--config", cfg)
    assert again.exit_code == 1 and "not a zombie" in again.stderr


def test_library_release_zombie(config_file: Path) -> None:
    cid = _zombie(config_file)
    with Communicator(load_config(config_file, env={}), watch=False) as comm:
        with pytest.raises(ValueError, match="--confirm-job-gone"):
            comm.release_zombie(GPU, reason="gone", confirm_job_gone=False)
        with pytest.raises(ValueError, match="non-empty --reason"):
            comm.release_zombie(GPU, reason=" ", confirm_job_gone=True)
        with pytest.raises(InvalidTransitionError, match="only a zombie"):
            comm.release_zombie("local/gpu1", reason="gone", confirm_job_gone=True)
        gpu = comm.release_zombie(GPU, reason="rack retired", confirm_job_gone=True, actor="kim@qa")
        assert gpu.status is GpuState.AVAILABLE and gpu.quarantined_case_id is None
        (audit,) = [t for t in comm.history(gpu_name=GPU) if t.trigger == "operator_release"]
        assert audit.evidence is not None and audit.evidence.actor == "kim@qa"
        assert audit.evidence.detail == "rack retired"
        assert comm.case(cid).status.value == "failed"  # the case itself is untouched
