"""One poll of ~1,500 jobs over SSH: the batched probe must not hit the argv limit.

Linux caps one argv string (the remote ``sh -c`` text) at 128 KiB; a probe of 1,500
directories under a realistic base path is ~200 KiB. Before the probe went through
stdin, such a poll failed as a whole and every job read UNKNOWN forever (found by
``bench/bench_tick.py``). The directories here do not exist, so every job must be
reported ABSENT, which only a probe that really ran can say.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_communicator.remote.protocol import JobRef, remote_case_dir
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from mqi_communicator.remote.schedulers.pueue.scheduler import PueueScheduler
from mqi_communicator.remote.schedulers.slurm.scheduler import SlurmScheduler
from mqi_communicator.remote.transport.ssh import SshTransport
from mqi_communicator.statemachine.jobs import JobState
from tests.infra.pueue import PueueStandin
from tests.infra.slurm import SlurmCluster
from tests.infra.sshd import SshServer

pytestmark = pytest.mark.ssh

JOBS = 1500


def _refs(base: Path) -> list[JobRef]:
    deep = base / ("site-data" * 4) / "mqi communicator" / "cases"
    return [JobRef(str(i), f"mqic-{i}-a1", remote_case_dir(str(deep), i, 1)) for i in range(JOBS)]


@pytest.fixture
def transport(live_sshd: SshServer) -> Iterator[SshTransport]:
    t = live_sshd.transport()
    yield t
    t.close()


def test_local_scheduler_polls_1500_jobs_in_one_go(transport: SshTransport, tmp_path: Path) -> None:
    statuses = LocalScheduler(transport, timeout=60).poll(_refs(tmp_path))
    assert len(statuses) == JOBS
    assert {s.state for s in statuses.values()} == {JobState.ABSENT}


def test_pueue_polls_1500_jobs_in_one_go(
    transport: SshTransport, pueue: PueueStandin, tmp_path: Path
) -> None:
    statuses = PueueScheduler(transport, pueue.command, timeout=60).poll(_refs(tmp_path))
    assert len(statuses) == JOBS
    assert {s.state for s in statuses.values()} == {JobState.ABSENT}


@pytest.mark.slurm
def test_slurm_polls_1500_jobs_in_one_go(
    live_sshd: SshServer, slurm: SlurmCluster, tmp_path: Path
) -> None:
    t = live_sshd.transport(env=slurm.env)
    try:
        # Ids far above anything the loopback cluster handed out: Slurm does not know them.
        refs = [
            JobRef(str(60_000_000 + int(r.job_id)), r.label, r.remote_dir) for r in _refs(tmp_path)
        ]
        statuses = SlurmScheduler(t, timeout=60).poll(refs)
    finally:
        t.close()
    assert len(statuses) == JOBS
    assert {s.state for s in statuses.values()} == {JobState.ABSENT}
