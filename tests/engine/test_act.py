"""A step the guards refuse is logged and skipped: nothing is written, the tick goes on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mqi_communicator.engine.act import apply_case_step
from mqi_communicator.engine.backoff import HostHealth
from mqi_communicator.engine.runtime import EngineSettings, TickContext, TickReport
from mqi_communicator.migrations.api import upgrade
from mqi_communicator.persistence import Store
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind, GpuState
from mqi_communicator.statemachine.decide import Apply, Policy

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_refused_release_writes_nothing_and_does_not_raise(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    store = Store.open(url)
    try:
        store.sync_gpus([("h/g0", "h")], NOW)
        case, _ = store.register_case(str(tmp_path / "case"), NOW)
        claimed = store.claim(case.id, NOW, plan=lambda c, g: ("L1", "/r/mqic_case_1_a1"))
        assert claimed is not None
        store.apply(case.id, "confirm_submitted", None, None, evidence=None, now=NOW, job_id="7")
        running = store.get_case(case.id)
        history_before = len(store.history())
        ctx = TickContext(
            store=store,
            hosts={},
            gpus={},
            policy=Policy(),
            settings=EngineSettings(command=("true",), results_dir=tmp_path / "results"),
            health=HostHealth(),
            now=NOW,
            report=TickReport(),
        )
        bogus = Evidence(EvidenceKind.KILL_REQUESTED, "L1", NOW)  # "kill returned 0"
        ok = apply_case_step(ctx, running, Apply("fail", "release", bogus, "planted"))
        assert ok is False
        assert ctx.report.errors and "refused" in ctx.report.errors[0]
        assert store.get_case(case.id).status is CaseState.RUNNING
        assert store.get_gpu("h/g0").status is GpuState.ASSIGNED
        assert len(store.history()) == history_before
    finally:
        store.close()
