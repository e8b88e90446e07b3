"""The transfer pool's limits and its config (local transport, real processes, SQLite)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mqi_communicator import CaseState
from mqi_communicator.engine.build import build_hosts
from mqi_communicator.engine.runtime import HostRuntime
from mqi_communicator.errors import ConfigError
from tests.infra.hooked import HookedTransport

from .conftest import Workspace


def _held_host(ws: Workspace, gate: threading.Event, entered: threading.Event, **engine: object):  # type: ignore[no-untyped-def]
    config = ws.config(gpus=2, engine=engine)

    def before_upload(local_dir: Path, _remote: str) -> None:
        if local_dir.name == "first":
            entered.set()
            assert gate.wait(60)

    (real,) = build_hosts(config).values()
    host = HostRuntime(
        real.name, HookedTransport(real.transport, before_upload), real.scheduler, real.remote_base
    )
    return config, {real.name: host}


def test_per_host_limit_keeps_a_second_claim_waiting(ws: Workspace) -> None:
    gate, entered = threading.Event(), threading.Event()
    config, hosts = _held_host(ws, gate, entered, transfers={"max_parallel": 4, "max_per_host": 1})
    comm = ws.communicator(config, hosts=hosts, watch=False)
    first = comm.register(ws.drop_case("first"))
    comm.reconciler.tick()  # starts the held upload in the pool, returns at once
    assert entered.wait(30)
    second = comm.register(ws.drop_case("second"))
    try:
        for _ in range(5):  # the tick goes on, but the host's one transfer slot is taken
            comm.reconciler.tick()
        assert comm.case(second.id).status is CaseState.SUBMITTED
        assert comm.case(first.id).status is CaseState.SUBMITTING
    finally:
        gate.set()
    deadline = time.monotonic() + 60
    while comm.case(second.id).status is not CaseState.COMPLETED:
        assert time.monotonic() < deadline, comm.cases()
        comm.tick()
        time.sleep(0.05)
    assert comm.case(first.id).attempt == 1 and comm.case(second.id).attempt == 1


def test_max_parallel_zero_is_inline(ws: Workspace) -> None:
    config = ws.config(engine={"transfers": {"max_parallel": 0}})
    comm = ws.communicator(config, watch=False)
    assert comm.transfers.inline
    case = comm.register(ws.drop_case("inline"))
    report = comm.reconciler.tick()  # the upload and submit ran in the tick itself
    assert report.submitted == 1 and comm.case(case.id).status is CaseState.RUNNING


def test_per_host_above_total_is_a_config_error(ws: Workspace) -> None:
    with pytest.raises(ConfigError, match=r"max_per_host.*max_parallel"):
        ws.config(engine={"transfers": {"max_parallel": 2, "max_per_host": 3}})
