"""A GPU's and a host poll's local errors are persisted: seen elsewhere, kept over restarts.

Real parts: SQLite, the local transport, real jobs, and a scheduler adapter that keeps a
local ledger of what it polls and kills (its own local I/O, as an adapter may do). The
ledger's folder replaced by a file makes the adapter raise a real ``NotADirectoryError``
(even for root); putting the folder back fixes it. Nothing is injected.

On the code before migration 0007 these failures lived in the engine's memory only:
``status`` and ``gpus list`` (other processes) saw nothing, and a new engine checked
again at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from click.testing import CliRunner

from mqi_communicator import CaseState, Communicator, Config, GpuState
from mqi_communicator.cli import main
from mqi_communicator.engine.runtime import HostRuntime, utcnow
from mqi_communicator.remote.protocol import JobRef, JobStatus
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from mqi_communicator.remote.transport.local import LocalTransport

from .conftest import Workspace, status_is, tick_until

#: Ignores SIGTERM (its `sleep` too) when flagged: only SIGKILL ends it; others complete.
STUBBORN_IF_FLAGGED = (
    "if [ -f stuck.flag ]; then trap '' TERM; sleep 300; fi; mkdir -p output; echo ok > output/r"
)
HOUR = timedelta(hours=1)


class LedgerScheduler(LocalScheduler):
    """The local scheduler, writing each poll and kill to a ledger file first."""

    def __init__(self, transport: LocalTransport, polls: Path, kills: Path) -> None:
        super().__init__(transport, kill_grace_s=300)
        self.polls, self.kills = polls, kills

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        with (self.polls / "ledger").open("a", encoding="utf-8") as f:
            f.write(f"poll {len(refs)}\n")
        return super().poll(refs)

    def kill(self, ref: JobRef) -> None:
        with (self.kills / "ledger").open("a", encoding="utf-8") as f:
            f.write(f"kill {ref.label}\n")
        super().kill(ref)


def _break(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.write_text("not a folder", encoding="utf-8")


def _mend(folder: Path) -> None:
    folder.unlink()
    folder.mkdir()


class Clock:
    """Real time plus a shift the test moves forward (past a backoff of hours)."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.shift


def _engine(ws: Workspace, config: Config, clock: Callable[[], datetime]) -> Communicator:
    polls, kills = ws.root / "polls", ws.root / "kills"
    for d in (polls, kills):
        if not d.exists():  # a broken one (a file) stays broken across a restart
            d.mkdir()
    transport = LocalTransport("local")
    host = HostRuntime(
        "local",
        transport,
        LedgerScheduler(transport, polls, kills),
        config.hosts["local"].remote_base,
    )
    return ws.communicator(config, hosts={"local": host}, clock=clock)


def _config(ws: Workspace) -> Config:
    return ws.config(
        command=STUBBORN_IF_FLAGGED,
        gpus=2,
        engine={
            "kill_confirm_s": 0.5,
            # Hours: a check or poll backing off cannot come due while the test looks.
            "backoff": {"base_s": 3600, "factor": 2, "cap_s": 4 * 3600},
        },
    )


def _cli(ws: Workspace, comm: Communicator, *args: str) -> str:
    """``mqi-communicator ARGS`` on the engine's database, as an operator would run it."""
    path = ws.root / "mqi.yaml"
    if not path.exists():
        data = {
            "watch_dir": "cases",
            "results_dir": "results",
            "database_url": comm.config.database_url,
            "command": ["true"],
            "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
            "gpus": [{"name": f"local/gpu{i}", "host": "local"} for i in range(2)],
        }
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = CliRunner().invoke(main, [*args, "--config", str(path)])
    assert out.exit_code == 0, out.output
    return out.output


def _stop_killers(root: Path) -> None:
    """End the detached killers our kills started (they sleep out a 300 s grace)."""
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"mqi-kill" in argv and any(str(root).encode() in a for a in argv):
                os.killpg(int(proc.name), signal.SIGKILL)  # setsid: its group is its pid


def test_a_zombie_checks_local_error_is_persisted_survives_a_restart_and_clears(
    ws: Workspace,
) -> None:
    clock = Clock()
    config = _config(ws)
    comm = _engine(ws, config, clock)
    try:
        _zombie_scenario(ws, comm, config, clock)
    finally:
        _stop_killers(ws.root)


def _backoff(comm: Communicator, gpu: str) -> timedelta:
    """The delay the GPU's last local error scheduled, from the note that recorded it.

    (The re-kill runs beside the tick, with the time its job started: not the tick's.)
    """
    note = [t for t in comm.history(gpu_name=gpu) if t.detail.startswith("local error while")][-1]
    next_at = comm.store.get_gpu(gpu).next_attempt_at
    assert next_at is not None
    return next_at - note.at


def _zombie_scenario(ws: Workspace, first: Communicator, config: Config, clock: Clock) -> None:
    ws.drop_case("stuck", {"stuck.flag": "", "plan.dcm": "p"})
    tick_until(first, lambda: any(c.status is CaseState.RUNNING for c in first.cases()), "running")
    (stuck,) = first.cases()
    first.cancel(stuck.id)  # its job ignores TERM: the kill is not confirmed in time
    tick_until(first, lambda: any(g.status is GpuState.ZOMBIE for g in first.gpus()), "zombie")
    (zombie,) = [g for g in first.gpus() if g.status is GpuState.ZOMBIE]
    assert zombie.local_failures == 0 and zombie.next_check_at is None
    # The zombie's first re-kill writes the adapter's ledger: make that fail.
    _break(ws.root / "kills")
    tick_until(first, lambda: first.store.get_gpu(zombie.name).local_failures == 1, "GPU fault")
    failed = first.store.get_gpu(zombie.name)
    assert failed.status is GpuState.ZOMBIE
    assert failed.last_error is not None and "NotADirectoryError" in failed.last_error
    assert failed.next_attempt_at is not None
    assert _backoff(first, zombie.name) == HOUR  # the backoff's base

    # Other GPUs and cases keep flowing while that GPU backs off.
    ws.drop_case("next")
    tick_until(first, lambda: len(first.cases()) == 2, "second case registered")
    nxt = next(c for c in first.cases() if c.name == "next")
    tick_until(first, status_is(first, nxt.id, CaseState.COMPLETED), "next case completed")
    assert first.case(nxt.id).gpu_name is None
    assert first.store.get_gpu(zombie.name).local_failures == 1  # not retried meanwhile

    # Seen from another process: the CLI reads the database.
    status = _cli(ws, first, "status")
    (line,) = [ln for ln in status.splitlines() if ln.startswith(f"GPU {zombie.name}: check")]
    assert "failing (1 in a row): checking the zombie: NotADirectoryError" in line
    assert f"next attempt at {failed.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" in line
    assert line in _cli(ws, first, "gpus", "list")

    # A new engine (the first one is gone) honours the backoff it finds in the row.
    first.close()
    ws.comms.remove(first)
    second = _engine(ws, config, clock)
    notes = len(second.history(gpu_name=zombie.name))
    for _ in range(5):
        second.tick()
    assert second.store.get_gpu(zombie.name).local_failures == 1
    assert len(second.history(gpu_name=zombie.name)) == notes  # no check, no note

    # Once it is due the check runs again, fails again, and backs off twice as long.
    clock.shift += 2 * HOUR
    tick_until(second, lambda: second.store.get_gpu(zombie.name).local_failures == 2, "again")
    again = second.store.get_gpu(zombie.name)
    assert again.next_attempt_at is not None
    assert _backoff(second, zombie.name) == 2 * HOUR

    # The ledger is mended: the next due check works and clears the count.
    _mend(ws.root / "kills")
    clock.shift += 3 * HOUR
    tick_until(second, lambda: second.store.get_gpu(zombie.name).local_failures == 0, "cleared")
    mended = second.store.get_gpu(zombie.name)
    assert mended.status is GpuState.ZOMBIE  # only evidence frees it
    assert (mended.last_error, mended.next_attempt_at) == (None, None)
    assert "kill " in (ws.root / "kills" / "ledger").read_text(encoding="utf-8")
    shown = _cli(ws, second, "status").splitlines()
    assert not any(ln.startswith(f"GPU {zombie.name}:") for ln in shown)


def test_a_polls_local_error_is_persisted_survives_a_restart_and_clears(ws: Workspace) -> None:
    clock = Clock()
    config = _config(ws)
    comm = _engine(ws, config, clock)
    ws.drop_case("long", {"stuck.flag": "", "plan.dcm": "p"})  # runs until killed
    tick_until(comm, lambda: any(c.status is CaseState.RUNNING for c in comm.cases()), "running")
    (long,) = comm.cases()
    _break(ws.root / "polls")
    tick_until(comm, lambda: _poll_failures(comm) == 1, "poll fault recorded")
    health = comm.host_health()["local"]
    assert health.up and health.failures == 0  # it answered: not down, no host_down event
    assert "NotADirectoryError" in health.poll_error and health.poll_next_at is not None

    # The host's other work goes on: a new case is claimed, submitted, and started.
    ws.drop_case("other", {"plan.dcm": "p"})
    tick_until(comm, lambda: len(comm.cases()) == 2, "second registered")
    other = next(c for c in comm.cases() if c.name == "other")
    tick_until(comm, status_is(comm, other.id, CaseState.RUNNING), "second started")

    (line,) = [ln for ln in _cli(ws, comm, "status").splitlines() if ln.startswith("poll on")]
    assert line.startswith("poll on local failing (1 in a row): NotADirectoryError")
    assert f"next attempt at {health.poll_next_at:%Y-%m-%d %H:%M:%S} UTC" in line
    assert line in _cli(ws, comm, "gpus", "list")

    comm.close()
    ws.comms.remove(comm)
    second = _engine(ws, config, clock)
    for _ in range(5):
        second.tick()
    assert _poll_failures(second) == 1  # the new engine waited: no poll, no new failure

    _mend(ws.root / "polls")
    clock.shift += 2 * HOUR
    tick_until(second, status_is(second, other.id, CaseState.COMPLETED), "second completed")
    assert _poll_failures(second) == 0
    assert second.host_health()["local"].poll_next_at is None
    assert not any(ln.startswith("poll on") for ln in _cli(ws, second, "status").splitlines())
    assert second.case(long.id).status is CaseState.RUNNING


def _poll_failures(comm: Communicator) -> int:
    rec = comm.host_health().get("local")
    return rec.poll_failures if rec is not None else 0
