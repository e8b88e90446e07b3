"""The delivery loop against a real HTTP receiver and real command hooks."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mqi_communicator import Evidence, EvidenceKind
from mqi_communicator.config import HooksConfig
from mqi_communicator.migrations import api
from mqi_communicator.notify import HookDispatcher
from mqi_communicator.persistence import Store
from mqi_communicator.persistence.models import HookOutbox
from mqi_communicator.persistence.outbox import outbox_stats
from tests.persistence.conftest import T0, at, label_plan

from .receiver import Receiver


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{(tmp_path / 'mqi.db').as_posix()}"
    api.upgrade(url)
    s = Store.open(url)
    yield s
    s.close()


def one_failed_case(store: Store) -> None:
    store.sync_gpus([("h/g0", "h")], T0)
    rec, _ = store.register_case("/cases/p1", T0)
    assert store.claim(rec.id, at(1), label_plan) is not None
    ev = Evidence(EvidenceKind.OBSERVED_TERMINAL, f"mqi-{rec.id}-a1", at(2), detail="exit 3")
    store.apply(rec.id, "fail", None, "release", evidence=ev, now=at(2), failure_reason="exit 3")


def only_row(store: Store) -> HookOutbox:
    (row,) = store.read(lambda s: s.scalars(select(HookOutbox)).all())
    return row


def recorder(path: Path) -> list[str]:
    """A command hook that appends its stdin (one JSON document) as a line to ``path``."""
    code = (
        "import sys,os; d=sys.stdin.buffer.read(); "
        f"open({str(path)!r},'ab').write(d+b'\\n'); "
        "sys.exit(int(os.environ.get('HOOK_EXIT','0')))"
    )
    return [sys.executable, "-c", code]


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_delivers_to_http_and_command_hooks(db: Store, receiver: Receiver, tmp_path: Path) -> None:
    one_failed_case(db)
    out = tmp_path / "cmd.jsonl"
    hooks = HooksConfig.model_validate(
        {
            "targets": {
                "web": {"url": receiver.url, "headers": {"Authorization": "Bearer s3cret"}},
                "cmd": {"command": recorder(out), "events": ["case_failed"]},
                "zombies-only": {
                    "command": recorder(tmp_path / "never.jsonl"),
                    "events": ["gpu_zombie"],
                },
            }
        }
    )
    assert HookDispatcher(db, hooks, clock=Clock(at(3))).deliver_due() == 1
    (posted,) = receiver.received()
    (piped,) = lines(out)
    row = only_row(db)
    assert row.status == "delivered" and row.attempts == 1 and row.done_hooks == "cmd,web"
    for doc, hook in ((posted, "web"), (piped, "cmd")):
        assert doc["event_id"] == row.event_id and doc["event"] == "case_failed"
        assert doc["reason"] == "exit 3" and doc["case"]["name"] == "p1"
        assert doc["evidence"]["kind"] == "observed_terminal"
        assert doc["delivery"] == {"hook": hook, "attempt": 1}
    assert receiver.headers[0]["authorization"] == "Bearer s3cret"
    assert receiver.headers[0]["x-mqi-event-id"] == row.event_id
    assert not (tmp_path / "never.jsonl").exists()
    # Delivered rows are not sent again.
    assert HookDispatcher(db, hooks, clock=Clock(at(100))).deliver_due() == 0


def test_failing_hook_is_retried_with_backoff_and_others_not_resent(
    db: Store, receiver: Receiver, tmp_path: Path
) -> None:
    one_failed_case(db)
    out = tmp_path / "cmd.jsonl"
    receiver.status = 500
    hooks = HooksConfig.model_validate(
        {
            "targets": {"web": {"url": receiver.url}, "cmd": {"command": recorder(out)}},
            "backoff": {"base_s": 10, "factor": 2},
            "max_attempts": 3,
        }
    )
    clock = Clock(at(3))
    d = HookDispatcher(db, hooks, clock=clock)
    assert d.deliver_due() == 1
    row = only_row(db)
    assert row.status == "pending" and row.done_hooks == "cmd" and row.failures == 1
    assert "HTTP 500" in (row.last_error or "")
    assert row.next_attempt_at == at(3) + timedelta(seconds=10)
    clock.now = at(12)
    assert d.deliver_due() == 0  # not due yet: backoff
    receiver.status = 200
    clock.now = at(13)
    assert d.deliver_due() == 1
    row = only_row(db)
    assert row.status == "delivered" and row.attempts == 2
    assert len(lines(out)) == 1  # the command hook had it already: not sent twice
    (posted,) = receiver.received()
    assert posted["delivery"]["attempt"] == 2
    stats = db.read(outbox_stats)
    assert stats["delivered"] == 1 and stats["failures_total"] == 1
    assert d.stats.hook_failures == 1 and d.stats.delivered == 1


def test_hanging_hook_is_killed_and_given_up_after_max_attempts(db: Store, tmp_path: Path) -> None:
    one_failed_case(db)
    started = tmp_path / "started"
    hang = [
        sys.executable,
        "-c",
        f"open({str(started)!r},'a').write('x'); import time; time.sleep(60)",
    ]
    hooks = HooksConfig.model_validate(
        {
            "targets": {"slow": {"command": hang, "timeout_s": 0.5}},
            "max_attempts": 2,
            "backoff": {"base_s": 1},
        }
    )
    clock = Clock(at(3))
    d = HookDispatcher(db, hooks, clock=clock)
    t0 = time.monotonic()
    d.deliver_due()
    assert time.monotonic() - t0 < 30  # killed at its timeout, not after its 60 s sleep
    row = only_row(db)
    assert row.status == "pending" and "timed out" in (row.last_error or "")
    clock.now = at(10)
    d.deliver_due()
    row = only_row(db)
    assert row.status == "failed" and row.attempts == 2 and row.failures == 2
    assert started.read_text() == "xx"
    assert d.stats.gave_up == 1


def test_no_hooks_marks_events_skipped(db: Store) -> None:
    one_failed_case(db)
    HookDispatcher(db, HooksConfig(), clock=Clock(at(3))).deliver_due()
    assert only_row(db).status == "skipped"


def test_stopping_mid_batch_hands_the_unsent_events_back(db: Store) -> None:
    one_failed_case(db)
    db.apply(None, None, "h/g0", "take_offline", evidence=None, now=at(2))  # not an event
    rec, _ = db.register_case("/cases/p2", T0)
    db.apply(rec.id, "fail", None, None, evidence=None, now=at(2), failure_reason="bad")
    calls: list[str] = []

    def sender(name: str, _t: object, _b: bytes, row: Any, cancel: Any) -> str | None:
        calls.append(row.event_id)
        cancel.set()  # the engine is asked to stop while this hook runs
        return "cancelled"

    hooks = HooksConfig.model_validate({"targets": {"x": {"command": ["true"]}}})
    d = HookDispatcher(db, hooks, clock=Clock(at(3)), sender=sender)
    assert d.deliver_due() == 2
    assert len(calls) == 1  # the second event was not sent...
    rows = db.read(lambda s: s.scalars(select(HookOutbox).order_by(HookOutbox.id)).all())
    assert [r.attempts for r in rows] == [1, 0]
    assert rows[1].next_attempt_at == at(3)  # ...and is due again at once, not after a lease
