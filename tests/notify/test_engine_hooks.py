"""Hooks beside a real engine: events reach a real receiver; a hanging hook stalls nothing.

And the outbox's promise: an event committed with its transition is delivered after a
``kill -9`` of the engine, by the next engine, with the same event id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from sqlalchemy import select

from mqi_communicator import CaseState, Communicator
from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store
from mqi_communicator.persistence.models import HookOutbox
from tests.e2e.crash_support import console_script
from tests.service.conftest import Workspace

from .receiver import Receiver, free_port

JOB = (
    "if [ -f fail.flag ]; then echo 'MOQUI: bad plan' >&2; exit 3; fi; "
    "mkdir -p output; echo d > output/dose.txt"
)


def wait_until(cond: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@contextmanager
def engine_thread(comm: Communicator) -> Iterator[None]:
    stop = threading.Event()
    t = threading.Thread(target=comm.run_forever, args=(stop,), daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(60)
        assert not t.is_alive()


def outbox(store: Store) -> list[HookOutbox]:
    return list(store.read(lambda s: s.scalars(select(HookOutbox).order_by(HookOutbox.id)).all()))


def test_engine_events_reach_the_receiver_and_a_command(ws: Workspace, receiver: Receiver) -> None:
    out = ws.root / "events.jsonl"
    record = [
        sys.executable,
        "-c",
        f"import sys; open({str(out)!r},'ab').write(sys.stdin.buffer.read()+b'\\n')",
    ]
    config = ws.config(
        command=JOB,
        hooks={
            "targets": {"web": {"url": receiver.url}, "cmd": {"command": record}},
            "poll_interval_s": 0.1,
        },
        engine={"max_attempts": 1},
    )
    comm = ws.communicator(config)
    ws.drop_case("good")
    ws.drop_case("bad", {"fail.flag": "x"})
    with engine_thread(comm):
        receiver.wait_for(
            lambda posts: {p["event"] for p in posts} >= {"case_completed", "case_failed"}
        )
        wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= 2, "cmd hook")
    by_event = {p["event"]: p for p in receiver.received()}
    assert by_event["case_completed"]["case"]["name"] == "good"
    failed = by_event["case_failed"]
    assert failed["case"]["name"] == "bad" and "exit" in (failed["reason"] or "")
    assert all(r.status == "delivered" for r in outbox(comm.store))


def test_a_hanging_hook_does_not_hold_up_the_engine(ws: Workspace, tmp_path: Path) -> None:
    started = tmp_path / "hook-started"
    hang = [
        sys.executable,
        "-c",
        f"open({str(started)!r},'w').write('x'); import time; time.sleep(120)",
    ]
    config = ws.config(
        command=JOB,
        hooks={"targets": {"slow": {"command": hang, "timeout_s": 100}}, "poll_interval_s": 0.1},
        engine={"max_attempts": 1},
    )
    comm = ws.communicator(config)
    ws.drop_case("first", {"fail.flag": "x"})
    with engine_thread(comm):
        wait_until(started.exists, "the hook started")
        ws.drop_case("second")
        # The hook hangs (100 s timeout); the engine still runs the next case to the end.
        wait_until(
            lambda: any(
                c.name == "second" and c.status is CaseState.COMPLETED for c in comm.cases()
            ),
            "second case completed while the hook hangs",
        )
        assert outbox(comm.store)[0].attempts == 0  # still in the hook's hands
        t0 = time.monotonic()
    # Leaving the block stopped the engine: the hanging hook was killed, not waited for.
    assert time.monotonic() - t0 < 30
    first = outbox(comm.store)[0]
    assert first.status == "pending" and "cancelled" in (first.last_error or "")


def test_delivery_survives_kill_9_between_commit_and_delivery(ws: Workspace) -> None:
    port = free_port()  # nothing listens yet: every delivery attempt fails
    config_path = ws.root / "mqi.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "watch_dir": "cases",
                "results_dir": "results",
                "command": ["sh", "-c", JOB],
                "intake": {"quiescence_s": 0.2},
                "engine": {"poll_interval_s": 0.2},
                "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
                "gpus": [{"name": "local/gpu0", "host": "local"}],
                "hooks": {
                    "targets": {"web": {"url": f"http://127.0.0.1:{port}/hook", "timeout_s": 2}},
                    "poll_interval_s": 0.1,
                    "backoff": {"base_s": 0.2, "cap_s": 0.5},
                    "max_attempts": 10000,
                },
            }
        )
    )
    ws.drop_case("survivor")
    ws.results.mkdir(exist_ok=True)  # `run` never creates it (an unmounted share stays visible)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*console_script(), "run", "--quiet", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    db = f"sqlite:///{(ws.root / 'mqi-communicator.db').as_posix()}"
    api.upgrade(db)
    engine = start()
    receiver: Receiver | None = None
    try:
        store = Store.open(db)
        try:
            # The transition is committed and delivery has been tried (and failed).
            wait_until(
                lambda: any(r.kind == "case_completed" and r.attempts >= 1 for r in outbox(store)),
                "a failed delivery attempt of case_completed",
            )
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait(30)
            (row,) = [r for r in outbox(store) if r.kind == "case_completed"]
            assert row.status == "pending"
            receiver = Receiver(port)
            engine = start()
            receiver.wait_for(lambda posts: any(p["event_id"] == row.event_id for p in posts))
            wait_until(
                lambda: (
                    [r.status for r in outbox(store) if r.event_id == row.event_id] == ["delivered"]
                ),
                "the row marked delivered",
            )
        finally:
            store.close()
        got = [p for p in receiver.received() if p["event"] == "case_completed"]
        assert {p["event_id"] for p in got} == {row.event_id}
        assert got[0]["case"]["name"] == "survivor"
    finally:
        if engine.poll() is None:
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait(30)
        if receiver is not None:
            receiver.close()
