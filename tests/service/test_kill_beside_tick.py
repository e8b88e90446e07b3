"""Kills and lookups run beside the tick: one host's hung command stalls no other case.

Two hosts on the local transport with the local scheduler and real jobs. On host "far"
one scheduler command (a case's kill, or the lookup by label of a case left
``submitting``) hangs for real: it first reads a FIFO that has no writer until the
test opens it. Meanwhile the engine, ticking in a thread of its own, must go on with
host "near": poll its case, time it out, kill it, confirm, and claim the GPU for the
next case. The far GPU must stay held the whole time (even once its job is gone), and
after the hang ends the far outcome must be applied. On the inline engine (every kill
and lookup in the tick) the first tick that reaches the far command blocks, and nothing
else moves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mqi_communicator import CaseRecord, CaseState, Communicator, EvidenceKind, GpuState
from mqi_communicator.config import Config, parse_config
from mqi_communicator.engine.build import build_hosts
from mqi_communicator.engine.runtime import HostRuntime
from mqi_communicator.remote.protocol import CommandResult, Transport, remote_case_dir
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from tests.infra.hooked import DelegatingTransport

from .conftest import Workspace

#: A case holding a HANG file runs until it is killed; the others finish at once.
COMMAND = "if [ -f HANG ]; then sleep 600; fi; mkdir -p output; echo dose > output/dose.txt"


class FifoGate(DelegatingTransport):
    """The first command that ``matches`` after :meth:`arm` first reads a FIFO: it hangs,
    a real process blocked in ``cat``, until :meth:`release` opens the FIFO and closes it."""

    def __init__(self, inner: Transport, fifo: Path, matches: Callable[[str], bool]) -> None:
        super().__init__(inner)
        self.fifo = fifo
        os.mkfifo(fifo)
        self.matches = matches
        self._armed = False
        self._lock = threading.Lock()
        self.entered = threading.Event()  # the gated command is running
        self.returned = threading.Event()  # ... and has returned

    def arm(self) -> None:
        with self._lock:
            self._armed = True

    def run(
        self, command: Sequence[str] | str, *, timeout: float, stdin: bytes | None = None
    ) -> CommandResult:
        with self._lock:
            gated = self._armed and isinstance(command, str) and self.matches(command)
            self._armed = self._armed and not gated
        if not gated:
            return super().run(command, timeout=timeout, stdin=stdin)
        assert isinstance(command, str)
        self.entered.set()
        try:
            return super().run(
                f"cat {self.fifo} >/dev/null; {command}", timeout=timeout, stdin=stdin
            )
        finally:
            self.returned.set()

    def release(self) -> None:
        """Let the gated command go on (opening for writing waits for its reader)."""
        if self.entered.is_set() and not self.returned.is_set():
            with open(self.fifo, "w"):
                pass


class Ticker:
    """The engine's ticks (``Reconciler.tick``), one after another in a thread of their own."""

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm
        self.ticks = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.comm.reconciler.tick()
            except BaseException as err:  # shown by wait_for, not lost in the thread
                self.errors.append(err)
                return
            self.ticks += 1
            self._stop.wait(0.05)  # the pace of the loop, not a synchronisation

    def wait_for(self, cond: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while not cond():
            assert not self.errors, self.errors
            if time.monotonic() > deadline:
                rows = [(c.name, c.status.value, c.gpu_name) for c in self.comm.cases()]
                gpus = [(g.name, g.status.value) for g in self.comm.gpus()]
                raise AssertionError(
                    f"never happened: {what} (ticks done: {self.ticks}); {rows} {gpus}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "a tick never returned"


def _config(ws: Workspace) -> Config:
    scheduler = {"kind": "local", "kill_grace_s": 1, "timeout_s": 300}
    data: dict[str, Any] = {
        "watch_dir": "cases",
        "results_dir": "results",
        "command": ["sh", "-c", COMMAND],
        "intake": {"quiescence_s": 0.2},
        "engine": {
            "poll_interval_s": 0.2,
            "job_timeout_s": 1,
            "kill_confirm_s": 600,  # the hang, however long, ends in a confirmed kill
            "backoff": {"base_s": 0.2},
            "transfers": {"max_parallel": 4, "max_per_host": 2},
        },
        "hosts": {
            name: {"scheduler": scheduler, "remote_base": f"remote-{name}"}
            for name in ("far", "near")
        },
        # Claims take the first free GPU: far's, while it is free.
        "gpus": [{"name": "far/gpu0", "host": "far"}, {"name": "near/gpu0", "host": "near"}],
    }
    return parse_config(data, base_dir=ws.root, env={})


def _gated(
    ws: Workspace, config: Config, matches: Callable[[str], bool]
) -> tuple[FifoGate, dict[str, HostRuntime]]:
    hosts = build_hosts(config)
    far = hosts["far"]
    gate = FifoGate(far.transport, ws.root / "gate.fifo", matches)
    sched = LocalScheduler(gate, timeout=300, kill_grace_s=1)
    hosts["far"] = HostRuntime(far.name, gate, sched, far.remote_base)
    return gate, hosts


def _case(ws: Workspace, comm: Communicator, name: str, hang: bool = False) -> CaseRecord:
    path = ws.drop_case(name, {"plan.dcm": "plan", **({"HANG": "x"} if hang else {})})
    return comm.register(path)


@pytest.fixture
def remotes(ws: Workspace) -> Iterator[None]:
    yield
    for base in ws.root.glob("remote-*"):
        for pgid_file in base.glob("*.mqi/pgid"):
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.killpg(int(pgid_file.read_text().strip()), signal.SIGKILL)


def _claimed_on(comm: Communicator, case_id: int) -> list[str | None]:
    return [t.gpu_name for t in comm.history(case_id=case_id) if t.trigger == "claim"]


def _gpu(comm: Communicator, name: str) -> GpuState:
    return next(g.status for g in comm.gpus() if g.name == name)


def test_a_hung_kill_stalls_no_other_case_and_keeps_its_gpu(ws: Workspace, remotes: None) -> None:
    config = _config(ws)
    gate, hosts = _gated(ws, config, lambda script: "mqi-kill" in script)
    comm = ws.communicator(config, hosts=hosts, watch=False)
    gate.arm()
    stuck = _case(ws, comm, "stuck", hang=True)
    ticker = Ticker(comm)
    try:
        ticker.wait_for(gate.entered.is_set, "the stuck case timed out and its kill hangs")
        assert comm.case(stuck.id).gpu_name == "far/gpu0"
        held_since = ticker.ticks
        other = _case(ws, comm, "other", hang=True)
        after = _case(ws, comm, "after")
        seen: set[GpuState] = set()

        def near_flowed() -> bool:
            seen.add(_gpu(comm, "far/gpu0"))
            o, a = comm.case(other.id), comm.case(after.id)
            return (
                o.status is CaseState.FAILED
                and "timed out" in (o.failure_reason or "")
                and a.status is CaseState.COMPLETED
            )

        # Polled, timed out, killed (confirmed), its GPU claimed for the next case:
        # all on near while far's kill still hangs.
        ticker.wait_for(near_flowed, "near's case timed out and killed, the next one done")
        assert not gate.returned.is_set()
        assert _claimed_on(comm, after.id) == ["near/gpu0"]
        assert ticker.ticks > held_since
        # The stuck job ends while its kill is in flight: still its GPU stays held.
        pgid = int(comm.case(stuck.id).job_id or "0")
        os.killpg(pgid, signal.SIGKILL)
        more = ticker.ticks + 5
        ticker.wait_for(lambda: ticker.ticks >= more, "ticks that saw the job gone")
        seen.add(_gpu(comm, "far/gpu0"))
        assert seen == {GpuState.ASSIGNED}
        assert comm.case(stuck.id).status is CaseState.RUNNING
        assert not gate.returned.is_set()

        gate.release()  # the hang ends: the kill returns and its outcome is applied
        ticker.wait_for(lambda: comm.case(stuck.id).status is CaseState.FAILED, "stuck failed")
    finally:
        gate.release()
        ticker.stop()
    done = comm.case(stuck.id)
    assert "timed out" in (done.failure_reason or "")
    assert _gpu(comm, "far/gpu0") is GpuState.AVAILABLE
    (release,) = [t for t in comm.history(gpu_name="far/gpu0") if t.trigger == "release"]
    assert release.evidence is not None and release.evidence.kind is EvidenceKind.KILL_CONFIRMED
    assert done.kill_reason == "timeout"


def test_a_hung_recovery_lookup_stalls_no_other_case(ws: Workspace, remotes: None) -> None:
    config = _config(ws)
    gate, hosts = _gated(ws, config, lambda _script: True)
    comm = ws.communicator(config, hosts=hosts, watch=False)
    lost = _case(ws, comm, "lost")
    # A crash right after the claim: the case is ``submitting`` on far, nothing sent.
    now = datetime.now(UTC)

    def plan(case: CaseRecord, _gpu_row: object) -> tuple[str, str]:
        base = hosts["far"].remote_base
        return f"mqic-{case.id}-a{case.attempt}", remote_case_dir(base, case.id, case.attempt)

    assert comm.store.claim(lost.id, now, plan=plan, candidates=["far/gpu0"]) is not None
    gate.arm()  # far's next command (the lookup by label) hangs
    ticker = Ticker(comm)
    try:
        ticker.wait_for(gate.entered.is_set, "the lookup by label of the lost case hangs")
        other = _case(ws, comm, "other", hang=True)
        after = _case(ws, comm, "after")
        seen: set[GpuState] = set()

        def near_flowed() -> bool:
            seen.add(_gpu(comm, "far/gpu0"))
            o, a = comm.case(other.id), comm.case(after.id)
            return o.status is CaseState.FAILED and a.status is CaseState.COMPLETED

        ticker.wait_for(near_flowed, "near's case timed out and killed, the next one done")
        assert not gate.returned.is_set()
        assert _claimed_on(comm, after.id) == ["near/gpu0"]
        assert seen == {GpuState.ASSIGNED}
        assert comm.case(lost.id).status is CaseState.SUBMITTING
        gate.release()  # not found by label: start revoked, requeued, and run again
        ticker.wait_for(
            lambda: comm.case(lost.id).status is CaseState.COMPLETED, "the lost case completed"
        )
    finally:
        gate.release()
        ticker.stop()
    trail = [t.trigger for t in comm.history(case_id=lost.id)]
    assert "requeue" in trail
    requeue = next(t for t in comm.history(case_id=lost.id) if t.trigger == "requeue")
    assert requeue.evidence is not None and requeue.evidence.kind is EvidenceKind.NEVER_SUBMITTED


def test_a_stop_abandons_a_hung_kill_and_the_next_start_finishes_it(
    ws: Workspace, remotes: None
) -> None:
    config = _config(ws)
    gate, hosts = _gated(ws, config, lambda script: "mqi-kill" in script)
    comm = ws.communicator(config, hosts=hosts, watch=False)
    gate.arm()
    stuck = _case(ws, comm, "stuck", hang=True)
    stop = threading.Event()
    engine = threading.Thread(target=comm.run_forever, args=(stop,), daemon=True)
    engine.start()
    try:
        assert gate.entered.wait(60), "the stuck case's kill never started"
        stop.set()  # SIGTERM, as `run` turns it into this event
        engine.join(timeout=60)
        # run_forever returned (the pool's grace over) while the kill still hung.
        assert not engine.is_alive() and not gate.returned.is_set()
        left = comm.case(stuck.id)
        assert left.status is CaseState.RUNNING and left.kill_requested_at is not None
        assert _gpu(comm, "far/gpu0") is GpuState.ASSIGNED
        comm.close()
        # The next start sends the kill again (the intent is in the row) and ends it.
        again = ws.communicator(config, hosts=hosts, watch=False)
        ticker = Ticker(again)
        try:
            ticker.wait_for(
                lambda: again.case(stuck.id).status is CaseState.FAILED,
                "stuck failed after restart",
            )
        finally:
            ticker.stop()
    finally:
        gate.release()
        stop.set()
    assert _gpu(again, "far/gpu0") is GpuState.AVAILABLE
    assert "timed out" in (again.case(stuck.id).failure_reason or "")
