"""Crash leftovers (partial copies) are removed at engine start: only ours, only old ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mqi_communicator import Communicator
from mqi_communicator.config import parse_config


def _tree(path: Path, age_s: float) -> Path:
    (path / "ct").mkdir(parents=True)
    (path / "ct" / "slice.dcm").write_bytes(b"x" * 1000)
    then = time.time() - age_s
    for p in (path / "ct" / "slice.dcm", path / "ct", path):
        os.utime(p, (then, then))
    return path


def test_engine_start_removes_only_our_old_partials(tmp_path: Path) -> None:
    staging = tmp_path / "results" / ".mqi-staging"
    remote = tmp_path / "remote"
    hour = 3600.0
    ours_old = [
        _tree(staging / "case7_a1.partial-0a1b2c3d4e5f", hour),  # ssh download
        _tree(staging / "case8_a2.partial-0a1b2c3d", hour),  # local download
        _tree(remote / "mqic_case_7_a1.partial-deadbeef", hour),  # local upload, 1.3 GB once
    ]
    kept = [
        _tree(staging / "case9_a1.partial-0a1b2c3d", 60),  # ours but young: maybe alive
        _tree(staging / "case7_a1", hour),  # a finished download: resumed, not a leftover
        _tree(remote / "mqic_case_7_a1", hour),  # a real case folder
        _tree(remote / "mqic_case_7_a1.partial-NOTHEX!", hour),  # not our name
        _tree(remote / "patient.partial-deadbeef", hour),  # not our name
        _tree(tmp_path / "results" / "case7_a1.partial-deadbeef", hour),  # not in staging
        _tree(tmp_path / "cases" / "mqic_case_1_a1.partial-deadbeef", hour),  # watch folder
    ]
    young_inside = _tree(staging / "case10_a1.partial-0a1b2c3d", hour)
    (young_inside / "ct" / "new.dcm").write_bytes(b"still being written")
    kept.append(young_inside)
    config = parse_config(
        {
            "watch_dir": "cases",
            "results_dir": "results",
            "command": ["true"],
            "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
            "gpus": [{"name": "local/gpu0", "host": "local"}],
        },
        base_dir=tmp_path,
        env={},
    )
    with Communicator(config) as comm:
        comm.tick()
    for path in ours_old:
        assert not path.exists(), path
    for path in kept:
        assert path.exists(), path
