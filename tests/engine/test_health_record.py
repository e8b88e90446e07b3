"""Host health reaches the database on change only, with its hook event, on both backends.

The engine's in-memory :class:`HostHealth` (the decision) wired to the real
:class:`HealthRecorder` and a real store, as the Reconciler wires them.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select

from mqi_communicator.engine.backoff import Backoff, HostHealth
from mqi_communicator.engine.health_record import HealthRecorder
from mqi_communicator.persistence import Store
from mqi_communicator.persistence.host_health import read_host_health
from mqi_communicator.persistence.models import HookOutbox
from tests.persistence.conftest import at


def _events(store: Store) -> list[dict[str, object]]:
    rows = store.read(lambda s: list(s.scalars(select(HookOutbox.payload).order_by(HookOutbox.id))))
    return [json.loads(r) for r in rows]


def test_changes_are_written_once_each_with_their_events(store: Store) -> None:
    now = [at(0)]

    def clock() -> datetime:
        return now[0]

    health = HostHealth(Backoff(base_s=5, factor=2, cap_s=60), HealthRecorder(store, clock))
    health.succeeded("gpu-a")  # first contact: recorded up, no event (nothing changed)
    (first,) = store.read(read_host_health).values()
    assert first.up and first.since == at(0) and not _events(store)

    now[0] = at(10)
    health.succeeded("gpu-a")  # up again and again: nothing written
    assert store.read(read_host_health)["gpu-a"].updated_at == at(0)

    health.failed("gpu-a", at(20), "connect: Connection refused")
    down = store.read(read_host_health)["gpu-a"]
    assert (down.up, down.since, down.failures) == (False, at(20), 1)
    assert down.next_retry_at == at(25) and down.last_error == "connect: Connection refused"
    health.failed("gpu-a", at(26), "connect: timed out")
    again = store.read(read_host_health)["gpu-a"]
    assert (again.since, again.failures, again.next_retry_at) == (at(20), 2, at(36))
    assert again.last_error == "connect: timed out"
    assert [e["event"] for e in _events(store)] == ["host_down"]  # one per change

    now[0] = at(40)
    health.succeeded("gpu-a")
    health.succeeded("gpu-a")
    back = store.read(read_host_health)["gpu-a"]
    assert (back.up, back.since, back.failures, back.next_retry_at) == (True, at(40), 0, None)
    assert back.last_error == "connect: timed out"  # why it was down, kept
    down_event, up_event = _events(store)
    assert up_event["event"] == "host_up" and up_event["at"] == at(40).isoformat()
    assert down_event["host"] == {
        "name": "gpu-a",
        "up": False,
        "since": at(20).isoformat(),
        "failures": 1,
        "last_error": "connect: Connection refused",
        "next_retry_at": at(25).isoformat(),
    }
    assert down_event["reason"] == "connect: Connection refused"
    assert down_event["case"] is None and down_event["gpu"] is None


def test_a_host_first_seen_failing_is_down_and_a_new_engine_recovers_it(
    store: Store,
) -> None:
    HostHealth(on_change=HealthRecorder(store, lambda: at(0))).failed("gpu-b", at(1), "refused")
    assert [e["event"] for e in _events(store)] == ["host_down"]
    # A restarted engine knows nothing in memory; its first answer still ends the outage.
    HostHealth(on_change=HealthRecorder(store, lambda: at(9))).succeeded("gpu-b")
    assert store.read(read_host_health)["gpu-b"].up
    assert [e["event"] for e in _events(store)] == ["host_down", "host_up"]
