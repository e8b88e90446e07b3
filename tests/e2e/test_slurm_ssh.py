"""End to end on the real loopback Slurm, reached over the real loopback sshd.

``SLURM_CONF`` reaches the Slurm clients through the host's ``env`` in the config file,
as it would on a site whose cluster config is not at the default path.
"""

from __future__ import annotations

import pytest

from mqi_communicator import CaseState, EvidenceKind, GpuState
from tests.infra.slurm import SlurmCluster
from tests.infra.sshd import SshServer

from .conftest import E2E, assert_results_verified, case_named, reaches, ssh_host, tick_until

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]


def test_case_completes_on_slurm_over_ssh(
    e2e: E2E, live_sshd: SshServer, slurm: SlurmCluster
) -> None:
    scheduler = {"kind": "slurm", "partition": slurm.partition, "timeout_s": 30}
    host = ssh_host(
        live_sshd, scheduler, e2e.remote_base, env={"SLURM_CONF": str(slurm.slurm_conf)}
    )
    path = e2e.write_config(
        {"hpc": host},
        [
            {"name": "hpc/gpu0", "host": "hpc", "slurm_partition": slurm.partition},
            {"name": "hpc/gpu1", "host": "hpc", "slurm_partition": slurm.partition},
        ],
    )
    comm = e2e.communicator(e2e.load(path))
    names = ["patient A", "patient B"]
    for name in names:
        e2e.drop_case(name)
    for name in names:
        tick_until(
            comm, reaches(comm, name, CaseState.COMPLETED, CaseState.FAILED), name, limit_s=120
        )
    for name in names:
        assert_results_verified(e2e, comm, name)
        case = case_named(comm, name)
        assert case is not None and case.job_id is not None and case.job_id.isdigit()
        # Slurm really ran it: the controller knows the job by our label.
        shown = slurm.client("scontrol", "show", "job", case.job_id)
        assert shown.returncode != 0 or f"JobName={case.label}" in shown.stdout, shown.stdout
    assert {g.status for g in comm.gpus()} == {GpuState.AVAILABLE}
    releases = [t for t in comm.history() if t.trigger == "release"]
    assert len(releases) == 2
    assert all(
        t.evidence is not None and t.evidence.kind is EvidenceKind.OBSERVED_TERMINAL
        for t in releases
    )
