"""Host health leaves the engine's process: its sshd stops, then comes back.

A real engine (``run`` in a subprocess) drives a job on the local scheduler over the
real loopback sshd. Stopping sshd makes the engine's polls fail: the ``host_health`` row
says down with the error and a retry time, ``status`` and ``gpus list`` (other
processes) show it, and one ``host_down`` event reaches a real HTTP receiver however
often the host fails again. sshd back: the row says up and ``host_up`` is delivered.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mqi_communicator import CaseState
from mqi_communicator.errors import SchemaMismatchError
from mqi_communicator.persistence import Store
from mqi_communicator.persistence.host_health import HostHealthRecord, read_host_health
from tests.e2e.crash_support import console_script
from tests.infra.sshd import SshServer
from tests.notify.receiver import Receiver

from .conftest import E2E, ssh_host

pytestmark = pytest.mark.ssh

HOST = "gpu-server"
T = TypeVar("T")


def wait(cond: Callable[[], T | None], what: str, limit_s: float = 60.0) -> T:
    """Poll ``cond`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + limit_s
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@contextmanager
def engine(config: Path, console: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``mqi-communicator run`` in its own process (its console into ``console``),
    stopped with SIGTERM afterwards."""
    with console.open("wb") as out:
        proc = subprocess.Popen(
            [*console_script(), "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.PIPE,
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()


def cli(config: Path, *args: str) -> str:
    out = subprocess.run(
        [*console_script(), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP webhook receiver (tests/notify/receiver.py)."""
    r = Receiver()
    yield r
    r.close()


def opened(db: Path) -> Store | None:
    """The engine's database once it exists at the schema head (it upgrades it first)."""
    try:
        return Store.open("sqlite:///" + db.as_posix())
    except SchemaMismatchError:
        return None


def events(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [e for e in receiver.received() if e["event"] == kind]


def test_host_down_and_up_are_recorded_shown_and_notified(
    e2e: E2E, live_sshd: SshServer, receiver: Receiver
) -> None:
    gate = e2e.root / "gate"
    job = (
        f"while [ ! -f {shlex.quote(str(gate))} ]; do sleep 0.1; done; "
        "mkdir -p output; echo d > output/dose.bin"
    )
    config = e2e.write_config(
        {HOST: ssh_host(live_sshd, {"kind": "local"}, e2e.remote_base)},
        [{"name": f"{HOST}/gpu0", "host": HOST}],
        command=job,
        extra={"hooks": {"targets": {"web": {"url": receiver.url}}, "poll_interval_s": 0.1}},
    )
    e2e.results.mkdir()  # a site makes it; `run` never does
    e2e.drop_case("patient 01")
    console = e2e.root / "run-console.txt"
    with engine(config, console):
        store = wait(lambda: opened(e2e.root / "mqi.db"), "the engine made its database")
        try:

            def health() -> HostHealthRecord | None:
                return store.read(read_host_health).get(HOST)

            def running() -> bool:
                return any(c.status is CaseState.RUNNING for c in store.list_cases())

            wait(running, "the job runs")
            up = wait(lambda: (h := health()) is not None and h.up and h, "recorded up")

            live_sshd.stop()
            down = wait(lambda: (h := health()) is not None and not h.up and h, "recorded down")
            assert down.last_error and down.next_retry_at is not None and down.failures >= 1
            assert down.since > up.since
            # Still down: a new retry time, the same since, and no second event.
            again = wait(
                lambda: (h := health()) is not None and h.failures >= 3 and h, "fails again"
            )
            assert not again.up and again.since == down.since
            assert again.next_retry_at is not None and down.next_retry_at is not None
            assert again.next_retry_at > down.next_retry_at
            receiver.wait_for(lambda got: any(e["event"] == "host_down" for e in got))
            (event,) = events(receiver, "host_down")
            assert event["host"]["name"] == HOST and event["host"]["up"] is False
            assert event["reason"] and event["transition"]["to"] == "down"

            status = cli(config, "status")
            (row,) = [line for line in status.splitlines() if line.startswith(HOST)]
            assert "DOWN" in row, status
            gpus = cli(config, "gpus", "list")
            assert f"{HOST}/gpu0" in gpus and "DOWN" in gpus, gpus
            top = cli(config, "top", "--once")
            (row,) = [line for line in top.splitlines() if line.startswith(HOST + " ")]
            assert " down " in row and "next try" in row, top

            live_sshd.start()
            back = wait(lambda: (h := health()) is not None and h.up and h, "recorded up again")
            assert back.failures == 0 and back.next_retry_at is None
            assert back.last_error, "the last error is kept: why it was down"
            receiver.wait_for(lambda got: any(e["event"] == "host_up" for e in got))
            (event,) = events(receiver, "host_up")
            assert event["host"]["name"] == HOST and event["transition"]["from"] == "down"
            assert "up" in cli(config, "status").split(HOST, 1)[1].splitlines()[0]

            # Up and polled every tick from now on: the row is not rewritten per tick.
            gate.touch()
            wait(
                lambda: any(c.status is CaseState.COMPLETED for c in store.list_cases()),
                "the case completes",
            )
            final = health()
            assert final is not None and final.updated_at == back.updated_at
            assert len(events(receiver, "host_down")) == 1
            assert len(events(receiver, "host_up")) == 1
        finally:
            store.close()
    shown = console.read_text()
    assert f"host {HOST}: down for" in shown and f"host {HOST}: up again" in shown, shown
