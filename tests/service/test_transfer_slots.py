"""The pool keeps the link busy: slots per direction, given back when the bytes are done.

Local transport, local scheduler, SQLite, real processes; every wait is an event or a
condition with a deadline. The limits are tight (``max_per_host: 1``) so that a slot
held a moment too long shows as a case that never starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mqi_communicator import CaseState, Config, TickReport
from mqi_communicator.engine.build import build_hosts
from mqi_communicator.engine.runtime import HostRuntime
from mqi_communicator.errors import TransferError
from mqi_communicator.remote.protocol import JobSpec
from tests.infra.hooked import HookedScheduler, HookedTransport

from .conftest import Workspace, status_is, tick_until

ONE_SLOT = {"max_parallel": 4, "max_per_host": 1}


def _hooked(
    config: Config,
    before_upload: Callable[[Path, str], None] = lambda _l, _r: None,
    before_download: Callable[[str, Path], None] | None = None,
    before_submit: Callable[[JobSpec], None] = lambda _s: None,
) -> dict[str, HostRuntime]:
    (real,) = build_hosts(config).values()
    transport = HookedTransport(real.transport, before_upload, before_download)
    scheduler = HookedScheduler(real.scheduler, before_submit)
    return {real.name: HostRuntime(real.name, transport, scheduler, real.remote_base)}


def _until(cond: Callable[[], bool], what: str, step: Callable[[], Any] = lambda: None) -> None:
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        step()
        time.sleep(0.05)


def test_a_download_in_flight_leaves_the_upload_slot_free(ws: Workspace) -> None:
    gate, downloading = threading.Event(), threading.Event()
    uploads: list[str] = []

    def before_download(_remote: str, _local: Path) -> None:
        if not downloading.is_set():
            downloading.set()
            assert gate.wait(60)

    config = ws.config(gpus=2, engine={"transfers": ONE_SLOT})
    hosts = _hooked(config, lambda local, _r: uploads.append(local.name), before_download)
    comm = ws.communicator(config, hosts=hosts, watch=False)
    first = comm.register(ws.drop_case("first"))
    _until(downloading.is_set, "the first case's download starts", comm.reconciler.tick)
    second = comm.register(ws.drop_case("second"))
    try:
        # The host's one download slot is taken; its one upload slot is not.
        _until(lambda: "second" in uploads, "the second upload starts", comm.reconciler.tick)
        assert comm.case(first.id).status is CaseState.RETRIEVING
    finally:
        gate.set()
    tick_until(comm, status_is(comm, second.id, CaseState.COMPLETED), "second completes")
    tick_until(comm, status_is(comm, first.id, CaseState.COMPLETED), "first completes")


def test_an_upload_frees_its_slot_before_its_submit_and_wakes_the_loop(ws: Workspace) -> None:
    """With a poll interval of an hour, only the freed slot's wake can start the second."""
    upload_gate, submit_gate = threading.Event(), threading.Event()
    first_uploading, second_uploading, submitting = (threading.Event() for _ in range(3))
    idle_after_drop = threading.Event()

    def before_upload(local: Path, _remote: str) -> None:
        if local.name == "first":
            first_uploading.set()
            assert upload_gate.wait(60)
        else:
            second_uploading.set()

    def before_submit(_spec: JobSpec) -> None:
        if not submitting.is_set():
            submitting.set()
            assert submit_gate.wait(60)

    config = ws.config(gpus=2, engine={"poll_interval_s": 3600, "transfers": ONE_SLOT})
    comm = ws.communicator(config, hosts=_hooked(config, before_upload, None, before_submit))

    def on_tick(report: TickReport | None) -> None:
        # A tick that changed nothing after both cases were known: the loop now sleeps
        # for the poll interval unless something wakes it.
        if report is not None and not report.busy and len(comm.cases()) == 2:
            idle_after_drop.set()

    stop = threading.Event()
    engine = threading.Thread(target=comm.run_forever, args=(stop, on_tick), daemon=True)
    ws.drop_case("first")
    engine.start()
    try:
        assert first_uploading.wait(60), "the first upload never started"
        ws.drop_case("second")
        assert idle_after_drop.wait(60), "the engine never went idle with the second waiting"
        assert not second_uploading.is_set()  # the one upload slot is the first's
        upload_gate.set()
        assert submitting.wait(60), "the first case was never submitted"
        assert second_uploading.wait(60), "the freed slot did not start the second upload"
        (first,) = [c for c in comm.cases() if c.name == "first"]
        assert first.status is CaseState.SUBMITTING  # its submit is still held
    finally:
        upload_gate.set()
        submit_gate.set()
        stop.set()
        engine.join(30)
    assert not engine.is_alive()


def test_a_job_that_ends_after_the_tick_read_its_rows_is_not_repeated(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download that failed mid-tick backs off; the tick's stale row must not retry it."""
    gate, downloading, armed = threading.Event(), threading.Event(), threading.Event()
    downloads: list[str] = []

    def before_download(remote: str, _local: Path) -> None:
        downloads.append(remote)
        if len(downloads) == 1:
            downloading.set()
            assert gate.wait(60)
            raise TransferError("test: the link broke mid-download")

    backoff = {"base_s": 3600, "cap_s": 3600}
    config = ws.config(engine={"transfers": ONE_SLOT, "backoff": backoff})
    comm = ws.communicator(config, hosts=_hooked(config, before_download=before_download))
    store = comm.reconciler.store
    list_cases = store.list_cases

    def list_then_end_the_download(*args: Any, **kwargs: Any) -> Any:
        rows = list_cases(*args, **kwargs)
        if armed.is_set():  # the job ends after the tick read its rows
            armed.clear()
            gate.set()
            assert comm.transfers.wait_idle(60)
        return rows

    monkeypatch.setattr(store, "list_cases", list_then_end_the_download)
    case = comm.register(ws.drop_case("first"))
    _until(downloading.is_set, "the download starts", comm.reconciler.tick)
    armed.set()
    comm.reconciler.tick()
    assert not armed.is_set(), "the hook never ran"
    assert comm.transfers.wait_idle(60)
    now = comm.case(case.id)
    assert now.status is CaseState.RETRIEVING and now.next_attempt_at is not None
    assert len(downloads) == 1, f"downloaded again despite the backoff: {downloads}"
