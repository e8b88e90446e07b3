"""A configured database with cases and GPUs in every interesting state (one a zombie)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from mqi_communicator import Evidence, EvidenceKind
from mqi_communicator.migrations import api
from mqi_communicator.persistence import CaseRecord, GpuRecord, Store

GPUS = [f"local/gpu{i}" for i in range(4)]


def plan(case: CaseRecord, gpu: GpuRecord) -> tuple[str, str]:
    return f"mqic-{case.id}-a{case.attempt}", f"/remote/mqic_case_{case.id}_a{case.attempt}"


@dataclass
class Site:
    root: Path
    config: Path
    url: str
    ids: dict[str, int]


def write_config(root: Path, url: str) -> Path:
    path = root / "mqi.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "watch_dir": "cases",
                "results_dir": "results",
                "database_url": url,
                "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
                "gpus": [{"name": g, "host": "local"} for g in GPUS],
            }
        )
    )
    return path


def populate(store: Store, fillers: int = 30) -> dict[str, int]:
    """Running on gpu0, a zombie on gpu1 (its case failed), gpu2 offline, gpu3 free."""
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    store.sync_gpus([(g, "local") for g in GPUS], t0)
    ids: dict[str, int] = {}
    for name in ("alpha running", "bravo zombie", "charlie completed"):
        case, _ = store.register_case(f"/cases/{name}", t0)
        ids[name] = case.id
    store.claim(ids["alpha running"], t0, plan, ["local/gpu0"])
    store.apply(
        ids["alpha running"], "confirm_submitted", None, None, evidence=None, now=t0, job_id="11"
    )
    store.claim(ids["bravo zombie"], t0, plan, ["local/gpu1"])
    store.apply(
        ids["bravo zombie"], "confirm_submitted", None, None, evidence=None, now=t0, job_id="12"
    )
    store.apply(
        ids["bravo zombie"],
        "fail",
        None,
        "quarantine",
        evidence=Evidence(EvidenceKind.UNREACHABLE, None, t0, detail="kill unconfirmed"),
        now=t0 + timedelta(minutes=1),
        failure_reason="timed out; kill not confirmed",
    )
    cid = ids["charlie completed"]
    store.claim(cid, t0, plan, ["local/gpu3"])
    store.apply(cid, "confirm_submitted", None, None, evidence=None, now=t0, job_id="13")
    proof = Evidence(EvidenceKind.OBSERVED_TERMINAL, f"mqic-{cid}-a1", t0)
    store.apply(cid, "job_succeeded", None, "release", evidence=proof, now=t0)
    store.apply(cid, "retrieved", None, None, evidence=None, now=t0 + timedelta(minutes=2))
    store.set_gpu_offline("local/gpu2", t0, True)
    for i in range(fillers):
        case, _ = store.register_case(f"/cases/waiting {i:03d}", t0)
        ids[f"waiting {i:03d}"] = case.id
    return ids


@pytest.fixture
def site(tmp_path: Path) -> Site:
    url = f"sqlite:///{(tmp_path / 'mqi.db').as_posix()}"
    api.upgrade(url)
    with Store.open(url) as store:
        ids = populate(store)
    return Site(tmp_path, write_config(tmp_path, url), url, ids)
