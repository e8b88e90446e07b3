"""sshd goes down while a timed-out job is being killed: zombie, no claim, recovery on evidence.

Pueue stand-in over the real loopback sshd. The only test hook is *when* the fault
happens: :class:`SshdDiesAtFirstKill` stops the real sshd (listener and every
connection) at the moment the engine starts its first kill, then lets the real kill
run into the dead host. Nothing is faked: the kill really fails, the job really runs on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mqi_communicator import CaseState, Communicator, EvidenceKind, GpuState
from mqi_communicator.engine.build import build_hosts
from mqi_communicator.remote.protocol import JobRef, JobSpec, JobStatus, Scheduler
from tests.infra.processes import group_alive
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

pytestmark = pytest.mark.ssh

#: Ignores SIGTERM (its `sleep` inherits that): only a SIGKILL ends it. Cases without
#: a ``stubborn.flag`` file run the normal stand-in job.
JOB = (
    "if [ -f stubborn.flag ]; then trap '' TERM; sleep 300; fi; "
    "mkdir -p output && find . -path ./.mqi -prune -o -path ./output -prune -o -type f -print "
    '| LC_ALL=C sort | while IFS= read -r f; do sha256sum "$f"; done > output/inputs.sha256 && '
    "head -c 4096 /dev/urandom > output/dose.bin"
)


class SshdDiesAtFirstKill:
    """The real scheduler; its first ``kill`` first stops the real sshd."""

    def __init__(self, inner: Scheduler, sshd: SshServer) -> None:
        self.inner = inner
        self.sshd = sshd
        self.fired = False

    def submit(self, spec: JobSpec) -> JobRef:
        return self.inner.submit(spec)

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        return self.inner.poll(refs)

    def find_by_label(self, label: str, remote_dir: str) -> JobRef | None:
        return self.inner.find_by_label(label, remote_dir)

    def kill(self, ref: JobRef) -> None:
        if not self.fired:
            self.fired = True
            self.sshd.stop()  # listener gone, every session dropped
        self.inner.kill(ref)


def _zombie_with_waiting_case(
    e2e: E2E, sshd: SshServer, pueue: PueueStandin
) -> tuple[Communicator, int]:
    """Drive to: stuck case failed, its GPU zombie, a next case waiting. Returns its pgid."""
    path = pueue_ssh_config(
        e2e, sshd, pueue, command=JOB, engine={"job_timeout_s": 1, "kill_confirm_s": 30}
    )
    config = e2e.load(path)
    hosts = build_hosts(config)
    host = hosts["gpu-server"]
    hosts["gpu-server"] = replace(host, scheduler=SshdDiesAtFirstKill(host.scheduler, sshd))
    comm = e2e.communicator(config, hosts=hosts)
    stuck = e2e.drop_case("stuck")
    (stuck / "stubborn.flag").write_text("")
    tick_until(comm, reaches(comm, "stuck", CaseState.FAILED, CaseState.COMPLETED), "stuck ended")
    case = case_named(comm, "stuck")
    assert case is not None and case.status is CaseState.FAILED
    assert case.failure_reason is not None
    assert "host unreachable when killing" in case.failure_reason
    assert "GPU quarantined" in case.failure_reason
    assert sshd.pid is None, "the fault hook never fired"
    (gpu,) = comm.gpus()
    assert gpu.status is GpuState.ZOMBIE and gpu.job_label == case.label
    assert case.remote_dir is not None
    pgid = int((Path(case.remote_dir + ".mqi") / "pgid").read_text().strip())
    assert group_alive(pgid), "the kill never reached the host, so the job must still run"

    e2e.drop_case("next")
    tick_until(comm, lambda: case_named(comm, "next") is not None, "next case registered")
    # The host stays down for a while; the next case must keep waiting for the GPU.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        comm.tick()
        nxt = case_named(comm, "next")
        assert nxt is not None and nxt.status is CaseState.SUBMITTED, nxt
        assert comm.gpus()[0].status is GpuState.ZOMBIE
        time.sleep(0.1)
    nxt = case_named(comm, "next")
    assert nxt is not None
    assert not [t for t in comm.history(case_id=nxt.id) if t.trigger == "claim"]
    assert group_alive(pgid)
    return comm, pgid


def test_sshd_down_during_kill_makes_zombie_and_next_case_waits(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    comm, _pgid = _zombie_with_waiting_case(e2e, live_sshd, pueue)
    (gpu,) = comm.gpus()
    (quarantine,) = [t for t in comm.history(gpu_name=gpu.name) if t.trigger == "quarantine"]
    assert quarantine.evidence is not None
    assert quarantine.evidence.kind is EvidenceKind.KILL_UNCONFIRMED
    assert comm.summary()["zombies"] == [gpu.name]


def test_zombie_recovers_only_after_the_job_is_confirmed_gone(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    comm, pgid = _zombie_with_waiting_case(e2e, live_sshd, pueue)
    # While the host was unreachable its pueued was restarted hard: Pueue now reports the
    # task Killed although its processes live on, so only the markers can tell.
    pueue.crash()
    pueue.start()
    assert group_alive(pgid)

    restarted_at = datetime.now(UTC)
    live_sshd.start()
    zombie_while_alive = 0
    deadline = time.monotonic() + 60
    while group_alive(pgid):
        assert time.monotonic() < deadline, "the stray job was never killed"
        comm.tick()
        if group_alive(pgid):
            # The re-kill's TERM is ignored; until the SIGKILL lands the GPU stays out.
            assert comm.gpus()[0].status is GpuState.ZOMBIE, "GPU freed while its job ran"
            nxt = case_named(comm, "next")
            assert nxt is not None and nxt.status is CaseState.SUBMITTED
            zombie_while_alive += 1
        time.sleep(0.05)
    assert zombie_while_alive > 0

    tick_until(comm, reaches(comm, "next", CaseState.COMPLETED, CaseState.FAILED), "next ended")
    assert_results_verified(e2e, comm, "next")
    (gpu,) = comm.gpus()
    assert gpu.status is GpuState.AVAILABLE
    gpu_trail = comm.history(gpu_name=gpu.name)
    (recover,) = [t for t in gpu_trail if t.trigger == "recover"]
    ev = recover.evidence
    assert ev is not None
    assert ev.kind in (EvidenceKind.OBSERVED_TERMINAL, EvidenceKind.CONFIRMED_ABSENT)
    assert ev.observed_at >= restarted_at, "recovered on an observation from before the restart"
    # A re-kill was sent after the restart, and the next case was claimed only afterwards.
    rekills = [
        t for t in gpu_trail if t.at >= restarted_at and "kill requested again" in (t.detail or "")
    ]
    assert rekills, [(t.trigger, t.detail) for t in gpu_trail]
    nxt = case_named(comm, "next")
    assert nxt is not None
    (claim,) = [t for t in comm.history(case_id=nxt.id) if t.trigger == "claim"]
    assert claim.at >= recover.at
