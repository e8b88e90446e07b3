"""PostgreSQL: no lock file, several engines on one database, no GPU double-claimed."""

from __future__ import annotations

import time

import pytest

from mqi_communicator import CaseState, GpuState
from mqi_communicator.config import parse_config
from mqi_communicator.migrations.api import upgrade

from .conftest import Workspace

pytestmark = pytest.mark.postgres


def test_two_engines_share_a_postgres_database(ws: Workspace, pg_url: str) -> None:
    upgrade(pg_url)
    base = ws.config(gpus=2).model_dump(mode="json")
    base["database_url"] = pg_url
    config = parse_config(base, base_dir=ws.root, env={})
    first, second = ws.communicator(config), ws.communicator(config)
    names = [f"case {i}" for i in range(5)]
    for name in names:
        ws.drop_case(name)
    deadline = time.monotonic() + 120
    while True:
        first.tick()
        second.tick()  # no EngineLockedError: PostgreSQL engines coordinate in the database
        cases = first.cases()
        if len(cases) == len(names) and all(c.status is CaseState.COMPLETED for c in cases):
            break
        assert time.monotonic() < deadline, [(c.name, c.status) for c in cases]
        # The invariant after every pair of ticks: a GPU holds at most one live case.
        holders = [
            c.gpu_name for c in cases if c.status in (CaseState.SUBMITTING, CaseState.RUNNING)
        ]
        assert len(holders) == len(set(holders))
        time.sleep(0.05)
    # Each folder registered once although both engines watch the same folder.
    assert sorted(c.name for c in cases) == names
    assert all(c.attempt == 1 for c in cases)
    for gpu in first.gpus():
        assert gpu.status is GpuState.AVAILABLE
        trail = [
            t.trigger
            for t in first.history(gpu_name=gpu.name)
            if t.trigger in ("assign", "release")
        ]
        # assign and release strictly alternate: never assigned twice without a release.
        assert trail == ["assign", "release"] * (len(trail) // 2)
    for name in names:
        assert (ws.results / name / "dose.txt").read_text() == "dose\n"
