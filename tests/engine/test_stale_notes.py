"""Decisions about a running attempt do not land on the attempt that replaced it.

A tick reads the running cases, polls, and acts. If the case moved on to another
attempt in between (another engine, an operator retry), the "job started" note and a
kill request are about an attempt the row no longer holds: they are dropped, and no kill
is sent for them. Both backends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mqi_communicator.engine.backoff import HostHealth
from mqi_communicator.engine.kills import act_on_case
from mqi_communicator.engine.runtime import EngineSettings, TickContext, TickReport
from mqi_communicator.migrations.api import upgrade
from mqi_communicator.persistence import CaseRecord, Store
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind
from mqi_communicator.statemachine.decide import Decision, MarkStarted, Policy, RequestKill
from tests.persistence.conftest import T0, at, label_plan


def _moved_on(store: Store) -> CaseRecord:
    """Attempt 1 running (the record a tick read), then ended and attempt 2 claimed."""
    store.sync_gpus([("h/g0", "h")], T0)
    rec, _ = store.register_case("/c1", T0)
    assert store.claim(rec.id, at(1), label_plan) is not None
    running, _ = store.apply(
        rec.id, "confirm_submitted", None, None, evidence=None, now=at(2), job_id="7"
    )
    assert running is not None
    ended = Evidence(EvidenceKind.OBSERVED_TERMINAL, "mqi-1-a1", at(3), detail="exit 1")
    store.apply(rec.id, "requeue", None, "release", evidence=ended, now=at(3))
    assert store.claim(rec.id, at(4), label_plan) is not None
    return running


@pytest.mark.parametrize(
    "decision",
    [MarkStarted(at(5)), RequestKill("timeout")],
    ids=["job-started-note", "kill-request"],
)
def test_a_decision_about_the_replaced_attempt_is_dropped(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, decision: Decision
) -> None:
    upgrade(db_url)
    store = Store.open(db_url)
    try:
        seen = _moved_on(store)
        before = (store.list_cases(), store.list_gpus(), store.history())
        ctx = TickContext(
            store=store,
            hosts={},
            gpus={},
            policy=Policy(),
            settings=EngineSettings(command=("true",), results_dir=tmp_path / "results"),
            health=HostHealth(),
            now=at(5),
            report=TickReport(),
        )
        with caplog.at_level(logging.WARNING, logger="mqi_communicator.engine"):
            act_on_case(ctx, seen, decision)
        assert (store.list_cases(), store.list_gpus(), store.history()) == before
        now = store.get_case(seen.id)
        assert (now.status, now.attempt, now.started_at, now.kill_requested_at) == (
            CaseState.SUBMITTING,
            2,
            None,
            None,
        )
        assert ctx.report.stale == 1 and ctx.report.kills == 0
        assert "stale outcome for attempt 1 dropped" in caplog.text
    finally:
        store.close()
