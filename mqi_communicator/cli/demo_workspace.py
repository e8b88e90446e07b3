"""The demo's throw-away workspace: folders, config, database, stand-in job, sample cases.

Everything the demo needs is created here, so ``mqi-communicator demo`` works right after
``pip install`` with no other setup: SQLite, the local transport and the local scheduler.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..migrations.api import upgrade

__all__ = ["STANDIN_SCRIPT", "DemoWorkspace", "create_workspace", "drop_sample_case"]

#: Stands in for MOQUI's interpreter + moquisim: reads the case's files, "simulates" for
#: a few seconds, and writes a dose file and a summary into ./output/. It runs inside the
#: uploaded case directory, as the real MOQUI steps would.
STANDIN_SCRIPT = '''\
"""Stand-in for MOQUI's interpreter + moquisim (mqi-communicator demo)."""
import hashlib, json, os, pathlib, sys, time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
case = pathlib.Path.cwd()
inputs = sorted(p for p in case.rglob("*") if p.is_file() and ".mqi" not in p.parts
                and "output" not in p.relative_to(case).parts)
digest = hashlib.sha256()
for p in inputs:
    digest.update(p.read_bytes())
print(f"interpreter: {len(inputs)} input files, sha256 {digest.hexdigest()[:12]}", flush=True)
steps = 10
for i in range(steps):
    time.sleep(seconds / steps)
    print(f"moquisim: {100 * (i + 1) // steps}%", flush=True)
out = case / "output"
out.mkdir(exist_ok=True)
dose = hashlib.sha256(digest.digest() + b"dose").digest() * 128  # 4 KiB of "dose"
(out / "dose.raw").write_bytes(dose)
(out / "summary.json").write_text(json.dumps({
    "case": case.name,
    "inputs": [str(p.relative_to(case)) for p in inputs],
    "input_sha256": digest.hexdigest(),
    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "seconds": seconds,
}, indent=2))
print("moquisim: done", flush=True)
'''


@dataclass(frozen=True)
class DemoWorkspace:
    """Where the demo's pieces live."""

    root: Path
    config_path: Path
    watch_dir: Path
    results_dir: Path
    database_url: str


def create_workspace(root: Path, *, seconds: float, gpus: int) -> DemoWorkspace:
    """Lay out folders, the stand-in script and the config under ``root``; upgrade the DB."""
    watch, results = root / "watch", root / "results"
    for d in (watch, results, root / "remote", root / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    script = root / "moqui_standin.py"
    script.write_text(STANDIN_SCRIPT, encoding="utf-8")
    db_url = f"sqlite:///{(root / 'mqi-communicator.db').as_posix()}"
    config = {
        "watch_dir": "watch",
        "results_dir": "results",
        "database_url": db_url,
        "command": [sys.executable, str(script), str(seconds)],
        # Sample cases appear by an atomic rename, so a short quiescence is safe here.
        "intake": {"quiescence_s": 0.5, "scan_interval_s": 5},
        "engine": {
            "poll_interval_s": 0.5,
            "job_timeout_s": max(60.0, seconds * 10),
            "kill_confirm_s": 30,
            "max_attempts": 2,
            "backoff": {"base_s": 0.5, "factor": 2, "cap_s": 5},
        },
        "log": {"file": "logs/mqi-communicator.log", "level": "INFO"},
        "hosts": {
            "local": {
                "transport": "local",
                "scheduler": {"kind": "local", "kill_grace_s": 1},
                "remote_base": "remote",
            }
        },
        "gpus": [
            {"name": f"local/gpu{i}", "host": "local", "cuda_devices": str(i)} for i in range(gpus)
        ],
    }
    config_path = root / "mqi-communicator.yaml"
    header = "# Written by `mqi-communicator demo`: local transport + local scheduler.\n"
    config_path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    upgrade(db_url)
    return DemoWorkspace(root, config_path, watch, results, db_url)


def _fake_dicom(modality: str, uid: str, payload: int) -> bytes:
    # A 128-byte preamble and the "DICM" magic, like a real DICOM file; the rest is text.
    body = f"Modality={modality}\nSOPInstanceUID={uid}\n".encode()
    return b"\0" * 128 + b"DICM" + body + bytes(range(256)) * payload


def drop_sample_case(ws: DemoWorkspace, index: int) -> Path:
    """Write one small DICOM-like case, then rename it into the watch folder at once."""
    name = f"demo_case_{index:02d}"
    staging = ws.watch_dir / f".{name}.partial"  # hidden: intake ignores it
    staging.mkdir()
    uid = f"1.2.826.0.1.3680043.10.{index}"
    (staging / "RTPLAN.dcm").write_bytes(_fake_dicom("RTPLAN", f"{uid}.1", 4))
    ct = staging / "CT"
    ct.mkdir()
    for s in range(3):
        (ct / f"CT.{s:04d}.dcm").write_bytes(_fake_dicom("CT", f"{uid}.2.{s}", 16))
    (staging / "treatment.log").write_text(f"beam 1: {index * 100} MU\n", encoding="utf-8")
    final = ws.watch_dir / name
    staging.rename(final)
    return final
