"""Operator actions (retry, GPU offline/online), the one-engine lock, and the log file."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mqi_communicator import (
    CaseContentError,
    CaseState,
    Communicator,
    EngineLockedError,
    GpuState,
    InvalidTransitionError,
)
from mqi_communicator.config import LogConfig
from mqi_communicator.dblock import sqlite_lock_path
from mqi_communicator.logsetup import setup_logging, teardown_logging

from .conftest import Workspace, only_case, status_is, tick_until

FAIL_IF_FLAGGED = "test -f must_fail && exit 3; mkdir -p output; echo ok > output/r.txt"


def test_retry_failed_case_runs_a_new_attempt(ws: Workspace) -> None:
    # remote_retention keep: this test looks at both attempts' remote folders at the end.
    comm = ws.communicator(ws.config(command=FAIL_IF_FLAGGED, engine={"remote_retention": "keep"}))
    case_dir = ws.drop_case("flaky", {"must_fail": "", "plan.dcm": "p"})
    tick_until(
        comm, lambda: bool(comm.cases()) and only_case(comm).status is CaseState.FAILED, "failed"
    )
    failed = only_case(comm)
    assert failed.failure_reason is not None and "code 3" in failed.failure_reason
    with pytest.raises(InvalidTransitionError, match="already ended"):
        comm.cancel(failed.id)
    (case_dir / "must_fail").unlink()  # the physicist fixed the input
    retried = comm.retry(failed.id)
    assert retried.status is CaseState.SUBMITTED and retried.attempt == 2
    assert retried.failure_reason is None and retried.label is None
    tick_until(comm, status_is(comm, failed.id, CaseState.COMPLETED), "completed on retry")
    done = comm.case(failed.id)
    assert done.attempt == 2 and done.label is not None and done.label.endswith("-a2")
    assert (ws.results / "flaky" / "r.txt").read_text() == "ok\n"
    # Each attempt got its own remote directory, and its own marker directory beside it.
    assert sorted(p.name for p in ws.remote_base.iterdir()) == [
        "mqic_case_1_a1",
        "mqic_case_1_a1.mqi",
        "mqic_case_1_a2",
        "mqic_case_1_a2.mqi",
    ]
    with pytest.raises(InvalidTransitionError):
        comm.retry(failed.id)  # completed cases cannot be retried


def test_gpu_offline_is_never_claimed_until_back_online(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(gpus=2))
    off = comm.set_gpu_offline("local/gpu1", True)
    assert off.status is GpuState.OFFLINE and off.offline_requested
    for name in ("a", "b", "c"):
        ws.drop_case(name)

    def all_done() -> bool:
        cases = comm.cases()
        return len(cases) == 3 and all(c.status is CaseState.COMPLETED for c in cases)

    tick_until(comm, all_done, "three cases completed on the one online GPU")
    assert {c.gpu_name for c in comm.cases()} == {None}  # released
    claims = [t for t in comm.history(gpu_name="local/gpu1") if t.trigger == "assign"]
    assert claims == []
    back = comm.set_gpu_offline("local/gpu1", False)
    assert back.status is GpuState.AVAILABLE and not back.offline_requested


def test_gpu_taken_offline_while_busy_drains_then_goes_offline(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(command="sleep 2; mkdir -p output; echo ok > output/r"))
    ws.drop_case("busy")
    tick_until(
        comm, lambda: bool(comm.cases()) and only_case(comm).status is CaseState.RUNNING, "running"
    )
    gpu = comm.set_gpu_offline("local/gpu0", True)
    assert gpu.status is GpuState.ASSIGNED and gpu.offline_requested
    case = only_case(comm)
    tick_until(comm, status_is(comm, case.id, CaseState.COMPLETED), "the running job finished")
    assert comm.gpus()[0].status is GpuState.OFFLINE
    ws.drop_case("later")
    tick_until(comm, lambda: len(comm.cases()) == 2, "second case registered")
    for _ in range(5):
        comm.tick()
    later = next(c for c in comm.cases() if c.name == "later")
    assert comm.case(later.id).status is CaseState.SUBMITTED
    comm.set_gpu_offline("local/gpu0", False)
    tick_until(comm, status_is(comm, later.id, CaseState.COMPLETED), "runs once back online")


def test_sqlite_lock_refuses_a_second_engine_and_names_the_holder(ws: Workspace) -> None:
    config = ws.config()
    first = ws.communicator(config)
    first.tick()
    second = ws.communicator(config)
    with pytest.raises(EngineLockedError) as info:
        second.tick()
    msg = str(info.value)
    assert f"pid {os.getpid()}" in msg and "another engine is already running" in msg
    lock = sqlite_lock_path(config.database_url)
    assert lock is not None and str(lock) in msg
    with pytest.raises(EngineLockedError):
        second.run_forever()
    # Queries and operator actions need no lock.
    assert second.cases() == [] and len(second.gpus()) == 1
    first.close()
    second.tick()  # the lock is free once the first engine is gone


def test_sqlite_lock_held_by_another_process_and_freed_by_its_death(ws: Workspace) -> None:
    config_path = ws.root / "mqi.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "watch_dir": "cases",
                "results_dir": "results",
                "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
                "gpus": [{"name": "local/gpu0", "host": "local"}],
            }
        )
    )
    script = textwrap.dedent(
        f"""
        import sys, time
        from mqi_communicator import Communicator
        c = Communicator.from_config_file({str(config_path)!r})
        c.tick()
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        comm = ws.communicator(Communicator.from_config_file(config_path).config)
        with pytest.raises(EngineLockedError, match=f"pid {holder.pid} "):
            comm.tick()
        holder.kill()  # kill -9: no clean-up code runs in the holder
        holder.wait(timeout=30)
        comm.tick()  # the kernel released the lock with the process
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


def test_register_rejects_non_directories(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(), watch=False)
    (ws.root / "file.txt").write_text("x")
    with pytest.raises(CaseContentError, match="not a directory"):
        comm.register(ws.root / "file.txt")
    with pytest.raises(CaseContentError):
        comm.register(ws.root / "missing")
    assert comm.cases() == []


def test_log_file_timestamps_in_configured_zone(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "mqi.log"
    try:
        assert setup_logging(LogConfig(file=log_file, timezone="Asia/Seoul")) == log_file
        setup_logging(LogConfig(file=log_file, timezone="Asia/Seoul"))  # no duplicate handler
        logging.getLogger("mqi_communicator.test").info("hello KST")
    finally:
        teardown_logging()
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \+0900 INFO +mqi_communicator\.test: hello KST",
        lines[0],
    )


def test_log_rotation(tmp_path: Path) -> None:
    log_file = tmp_path / "mqi.log"
    try:
        setup_logging(LogConfig(file=log_file, max_bytes=2000, backups=2))
        for i in range(200):
            logging.getLogger("mqi_communicator.test").info("line %d %s", i, "x" * 50)
    finally:
        teardown_logging()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mqi.log", "mqi.log.1", "mqi.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
