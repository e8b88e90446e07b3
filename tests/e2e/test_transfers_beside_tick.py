"""Transfers run beside the tick: a held upload stalls nothing else (real sshd + Pueue stand-in).

One case's upload is held by a gate (a ``threading.Event`` the test opens, no sleep).
While it is held, the engine (``Communicator.run_forever``) must go on: claim GPUs for
other cases, upload and submit them, poll, time a hung job out and kill it, and bring a
finished case's results home. On the inline engine all of that waited for the upload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mqi_communicator import CaseState, Communicator
from mqi_communicator.engine.build import build_hosts
from mqi_communicator.engine.runtime import HostRuntime
from tests.infra.hooked import HookedTransport
from tests.infra.pueue import PueueStandin
from tests.infra.sshd import SshServer

from .conftest import E2E, JOB, assert_results_verified, case_named, reaches, ssh_host

# watchdog 7 warns when a folder created during its own walk is added twice (harmless).
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

#: A case holding a HANG file runs until it is killed.
COMMAND = f"if [ -f HANG ]; then sleep 600; fi; {JOB}"


def _wait(cond: Callable[[], bool], what: str, comm: Communicator, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            states = [(c.name, c.status.value, c.failure_reason) for c in comm.cases()]
            raise AssertionError(f"never happened: {what}; cases={states}")
        time.sleep(0.05)


def test_a_held_upload_stalls_no_other_case(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    for group in ("gpu1", "gpu2"):
        pueue.cli("group", "add", group, "-p", "1", check=True)
    scheduler = {"kind": "pueue", "pueue_command": pueue.command, "kill_grace_s": 1}
    path = e2e.write_config(
        {"gpu-server": ssh_host(live_sshd, scheduler, e2e.remote_base)},
        [
            {"name": f"gpu-server/{g}", "host": "gpu-server", "pueue_group": g}
            for g in ("default", "gpu1", "gpu2")
        ],
        command=COMMAND,
        engine={"job_timeout_s": 3, "transfers": {"max_parallel": 4, "max_per_host": 3}},
    )
    config = e2e.load(path)
    gate, entered = threading.Event(), threading.Event()
    held_uploads: list[str] = []

    def before_upload(local_dir: Path, remote_dir: str) -> None:
        if local_dir.name == "held":
            held_uploads.append(remote_dir)
            entered.set()
            assert gate.wait(120), "the test never opened the gate"

    (real,) = build_hosts(config).values()
    host = HostRuntime(
        real.name, HookedTransport(real.transport, before_upload), real.scheduler, real.remote_base
    )
    comm = e2e.communicator(config, hosts={real.name: host})
    stop = threading.Event()
    engine = threading.Thread(target=comm.run_forever, args=(stop,), daemon=True)
    engine.start()
    try:
        e2e.drop_case("held")
        assert entered.wait(60), "the held case's upload never started"
        e2e.drop_case("hang")
        (e2e.watch / "hang" / "HANG").write_text("x")
        e2e.drop_case("quick")

        def others_done() -> bool:
            hang = case_named(comm, "hang")
            return reaches(comm, "quick", CaseState.COMPLETED)() and (
                hang is not None
                and hang.status is CaseState.FAILED
                and "timed out" in (hang.failure_reason or "")
            )

        _wait(others_done, "quick completed and hang timed out and killed", comm)
        # All of that happened while the held upload was still blocked in the pool.
        assert not gate.is_set()
        held = case_named(comm, "held")
        assert held is not None and held.status is CaseState.SUBMITTING
        assert_results_verified(e2e, comm, "quick")
        gate.set()
        _wait(reaches(comm, "held", CaseState.COMPLETED), "held completed", comm)
    finally:
        gate.set()
        stop.set()
        engine.join(timeout=30)
        real.transport.close()
    assert not engine.is_alive()
    # Many ticks ran while it was held: its upload was started exactly once.
    assert len(held_uploads) == 1
    assert_results_verified(e2e, comm, "held")
    assert comm.case(case_named(comm, "held").id).attempt == 1  # type: ignore[union-attr]
