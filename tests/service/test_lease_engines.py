"""Two engines on PostgreSQL, a takeover attempted during a long upload (issue 8, bug 3).

Engine 1 is its own process (``lease_engine_child``); its upload waits on a line we
write to its stdin, so it is "long" for exactly as long as the test wants. Engine 2 runs
here with its clock an hour ahead: past any takeover grace (old 30 min, now 3 min here),
within the job timeout.

1. While engine 1 renews its lease, engine 2 never recovers the case.
2. Engine 1 freezes (SIGSTOP: no renewals, as if dead). Its lease expires by the
   database's clock, and engine 2 recovers the case by label as before: revokes the start
   claim, releases the GPU as never submitted, and runs attempt 2 on it.
3. Engine 1 wakes up and its upload of attempt 1 ends in an error: that outcome is
   dropped. Attempt 2 and its GPU are untouched, engine 1's log says so.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import psycopg
import pytest

from mqi_communicator import CaseState, GpuState
from mqi_communicator.config import Config, parse_config
from mqi_communicator.engine.runtime import utcnow
from mqi_communicator.migrations.api import upgrade
from mqi_communicator.remote.job.marker_probe import marker_dir
from mqi_communicator.statemachine import Evidence, EvidenceKind

from .conftest import Workspace

pytestmark = pytest.mark.postgres

_REPO = Path(__file__).resolve().parents[2]
_TTL_S = 2.0


def _lines(stream: IO[str]) -> queue.Queue[str]:
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return found


def _expect(lines: queue.Queue[str], prefix: str, limit_s: float = 60.0) -> str:
    deadline = time.monotonic() + limit_s
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line.startswith(prefix):
            return line


def _wait(cond: Callable[[], bool], what: str, step: Callable[[], None], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        step()
        time.sleep(0.05)


def _others_busy(pg_url: str) -> int:
    """Connections to the test database (other than this query) inside a transaction."""
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _freeze(proc: subprocess.Popen[str], pg_url: str) -> None:
    """SIGSTOP ``proc`` at a moment it holds no transaction (no row lock to block us)."""
    deadline = time.monotonic() + 30
    while True:
        os.kill(proc.pid, signal.SIGSTOP)
        if _others_busy(pg_url) == 0:
            return
        os.kill(proc.pid, signal.SIGCONT)
        assert time.monotonic() < deadline, "engine 1 never left its transaction"
        time.sleep(0.01)


@pytest.fixture
def config(ws: Workspace, pg_url: str) -> Config:
    upgrade(pg_url)
    data = ws.config(engine={"lease_ttl_s": _TTL_S, "transfer_timeout_s": 120}).model_dump(
        mode="json"
    )
    data["database_url"] = pg_url
    return parse_config(data, base_dir=ws.root, env={})


@pytest.fixture
def start_engine_1(ws: Workspace, config: Config) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    path = ws.root / "engine1.json"
    path.write_text(json.dumps(config.model_dump(mode="json")), encoding="utf-8")
    procs: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.service.lease_engine_child", str(path)],
            cwd=_REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.communicate(timeout=30)


def test_no_takeover_while_the_lease_lives_and_a_late_outcome_is_dropped(
    ws: Workspace,
    config: Config,
    pg_url: str,
    start_engine_1: Callable[[], subprocess.Popen[str]],
) -> None:
    def an_hour_ahead() -> datetime:
        return utcnow() + timedelta(hours=1)

    engine_2 = ws.communicator(config, clock=an_hour_ahead, watch=False)
    case_id = engine_2.register(ws.drop_case("patient 1")).id
    engine_1 = start_engine_1()  # its one tick claims the case and starts the upload
    assert engine_1.stdin is not None and engine_1.stdout is not None
    out = _lines(engine_1.stdout)
    owner_1 = _expect(out, "engine ").split(" ", 1)[1]
    assert _expect(out, "uploading ").endswith("mqic_case_1_a1")

    # 1. Engine 1's upload hangs; it renews its lease; engine 2 keeps its hands off.
    expiries: set[datetime] = set()

    def renewed_three_times() -> bool:
        case = engine_2.case(case_id)
        assert (case.status, case.attempt, case.label) == (
            CaseState.SUBMITTING,
            1,
            "mqic-1-a1",
        )
        if case.lease_expires_at is not None:
            expiries.add(case.lease_expires_at)
        return len(expiries) >= 4

    _wait(renewed_three_times, "engine 1 renewed its lease 3 times", engine_2.tick, 60)
    assert engine_2.case(case_id).lease_owner == owner_1
    assert engine_2.gpus()[0].job_label == "mqic-1-a1"

    # 2. Engine 1 freezes; once its lease expired, engine 2 recovers the case by label.
    _freeze(engine_1, pg_url)
    _wait(
        lambda: engine_2.case(case_id).status is CaseState.RUNNING,
        "engine 2 recovered the case and runs attempt 2",
        engine_2.tick,
        60,
    )
    taken = engine_2.case(case_id)
    assert (taken.attempt, taken.label) == (2, "mqic-1-a2")
    releases = [t for t in engine_2.history(gpu_name="local/gpu0") if t.trigger == "release"]
    assert len(releases) == 1 and releases[0].evidence is not None
    assert releases[0].evidence.kind is EvidenceKind.NEVER_SUBMITTED
    assert releases[0].evidence.label == "mqic-1-a1"
    # Recovered "as today": no wrapper can ever start in attempt 1's directory.
    attempt_1 = marker_dir(str(ws.remote_base / "mqic_case_1_a1"))
    assert (Path(attempt_1) / "start").is_symlink()

    # 3. Engine 1 wakes up and its attempt-1 upload fails: the outcome is dropped.
    before = (engine_2.cases(), engine_2.gpus(), engine_2.history())
    os.kill(engine_1.pid, signal.SIGCONT)
    engine_1.stdin.write("fail\n")
    engine_1.stdin.flush()
    report = _expect(out, "report ")
    _, err = engine_1.communicate(timeout=60)
    assert engine_1.returncode == 0, err
    assert "stale=1" in report, (report, err)
    assert "case 1: stale outcome for attempt 1 dropped" in err
    assert (engine_2.cases(), engine_2.gpus(), engine_2.history()) == before

    _wait(
        lambda: engine_2.case(case_id).status is CaseState.COMPLETED,
        "attempt 2 completed",
        engine_2.tick,
        60,
    )
    assert engine_2.case(case_id).attempt == 2
    assert engine_2.gpus()[0].status is GpuState.AVAILABLE
    assert not [t for t in engine_2.history(case_id=case_id) if t.trigger == "fail"]
    assert (ws.results / "patient 1" / "dose.txt").read_text() == "dose\n"


def test_a_second_engine_does_not_download_results_another_engine_holds(
    ws: Workspace, config: Config
) -> None:
    engine = ws.communicator(config, watch=False)
    store = engine.store
    case = engine.register(ws.drop_case("patient 2"))
    base = engine.hosts["local"].remote_base
    remote = Path(base) / "done_a1"
    (remote / "output").mkdir(parents=True)
    (remote / "output" / "dose.txt").write_text("dose\n", encoding="utf-8")
    now = utcnow()
    assert store.claim(case.id, now, plan=lambda c, g: ("mqic-2-a1", str(remote))) is not None
    store.apply(case.id, "confirm_submitted", None, None, evidence=None, now=now, job_id="9")
    ended = Evidence(EvidenceKind.OBSERVED_TERMINAL, "mqic-2-a1", now, detail="exit 0")
    store.apply(case.id, "job_succeeded", None, "release", evidence=ended, now=now)
    seen = store.get_case(case.id)
    # Another engine is downloading these results (its lease is live).
    assert store.take_lease(case.id, "other-engine", 600, expected_version=seen.version)
    for _ in range(3):
        engine.tick()
    assert engine.case(case.id).status is CaseState.RETRIEVING
    assert not (ws.results / "patient 2").exists()
    assert not (ws.results / ".mqi-staging").exists()
    # Its step ends (the lease ends with it): now this engine may bring them home.
    assert store.release_lease(case.id, "other-engine")
    engine.tick()
    assert engine.case(case.id).status is CaseState.COMPLETED
    assert (ws.results / "patient 2" / "dose.txt").read_text() == "dose\n"
