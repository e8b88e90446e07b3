"""SIGTERM during a large upload over the loopback sshd: stop within the bound, submit nothing.

A real engine process (the ``run`` loop: ``stop_on_signals`` + ``run_forever``) uploads a
64 MiB case to the loopback sshd, throttled through its progress callback so the upload
is surely under way when the signal lands. The process must exit within
:data:`STOP_BOUND_S` (the README's bound), the Pueue stand-in must hold no task, nothing
may appear at the case's remote directory, and a new engine must finish the case.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mqi_communicator import CaseState
from tests.infra.pueue import PueueStandin
from tests.infra.sshd import SshServer

from .conftest import (
    E2E,
    assert_results_verified,
    case_named,
    pueue_ssh_config,
    reaches,
    tick_until,
)
from .slow_upload import start_uploading

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

#: The README's promise: ``run`` stops this soon after SIGTERM/SIGINT.
STOP_BOUND_S = 5.0

ENGINE = """
import threading
from mqi_communicator import Communicator
from mqi_communicator.cli.run import stop_on_signals
from mqi_communicator.config import load_config
from mqi_communicator.logsetup import setup_logging

config = load_config(sys.argv[1], env={})
setup_logging(config.log)
comm = Communicator(config, progress=progress)
stop = threading.Event()
with stop_on_signals(stop):
    comm.run_forever(stop)
comm.close()
print("stopped", flush=True)
"""


def test_sigterm_mid_upload_stops_in_bound_submits_nothing_and_restart_finishes(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    path = pueue_ssh_config(
        e2e, live_sshd, pueue, extra={"log": {"file": "logs/engine.log", "timezone": "UTC"}}
    )
    case_dir = e2e.drop_case("big")
    (case_dir / "ct" / "volume.raw").write_bytes(os.urandom(64 << 20))
    engine = start_uploading(ENGINE, path)
    try:
        engine.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            out, err = engine.communicate(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run did not stop within {STOP_BOUND_S} s of SIGTERM")
        took = time.monotonic() - signalled
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(timeout=30)
    assert engine.returncode == 0 and "stopped" in out, err
    print(f"stopped {took:.2f} s after SIGTERM")
    # Nothing was submitted: the scheduler has no task at all.
    tasks = json.loads(pueue.cli("status", "--json", check=True).stdout)["tasks"]
    assert tasks == {}
    config = e2e.load(path)
    comm = e2e.communicator(config)
    case = case_named(comm, "big")
    assert case is not None and case.status is CaseState.SUBMITTING  # as a crash leaves it
    assert case.remote_dir is not None
    remote = Path(case.remote_dir)
    # Nothing half-made: the case's directory never appeared, the far side's partial goes.
    assert not remote.exists()
    deadline = time.monotonic() + 15
    while any(p.name.startswith(remote.name) for p in remote.parent.iterdir()):
        assert time.monotonic() < deadline, sorted(p.name for p in remote.parent.iterdir())
        time.sleep(0.05)
    # A new engine recovers the case (by label: not found, start revoked) and finishes it.
    tick_until(comm, reaches(comm, "big", CaseState.COMPLETED), "big completed", limit_s=120)
    assert_results_verified(e2e, comm, "big")
