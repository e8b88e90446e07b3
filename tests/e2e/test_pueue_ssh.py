"""End to end over the real loopback sshd with the Pueue stand-in behind it.

The local-scheduler end-to-end tests live in ``tests/service/test_e2e_local.py`` (and
the crash test here runs the local scheduler as a subprocess); a config with a wrong
key naming it is covered by ``tests/config/test_config.py``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from mqi_communicator import CaseState, EvidenceKind, GpuState
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


def test_case_completes_over_ssh_with_results_verified(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    comm = e2e.communicator(e2e.load(pueue_ssh_config(e2e, live_sshd, pueue)))
    e2e.drop_case("patient 01")
    tick_until(comm, reaches(comm, "patient 01", CaseState.COMPLETED), "completed")
    assert_results_verified(e2e, comm, "patient 01")
    case = case_named(comm, "patient 01")
    assert case is not None and case.host == "gpu-server" and case.job_id is not None
    # The job really went through the stand-in: its task carries our label.
    assert f'"label": "{case.label}"' in pueue.cli("status", "--json", check=True).stdout.replace(
        '":"', '": "'
    )
    trail = [t.to_state for t in comm.history(case_id=case.id) if t.entity == "case"]
    assert [s for i, s in enumerate(trail) if i == 0 or trail[i - 1] != s] == [
        "submitted",
        "submitting",
        "running",
        "retrieving",
        "completed",
    ]
    (gpu,) = comm.gpus()
    assert gpu.status is GpuState.AVAILABLE and gpu.case_id is None
    (release,) = [t for t in comm.history(gpu_name=gpu.name) if t.trigger == "release"]
    assert release.evidence is not None
    assert release.evidence.kind is EvidenceKind.OBSERVED_TERMINAL


def test_nonzero_exit_fails_with_exit_code(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    path = pueue_ssh_config(
        e2e, live_sshd, pueue, command="echo 'MOQUI: beam energy out of range' >&2; exit 42"
    )
    comm = e2e.communicator(e2e.load(path))
    e2e.drop_case("bad beam")
    tick_until(comm, reaches(comm, "bad beam", CaseState.FAILED, CaseState.COMPLETED), "ended")
    case = case_named(comm, "bad beam")
    assert case is not None and case.status is CaseState.FAILED
    assert case.failure_reason is not None
    assert "job exited with code 42" in case.failure_reason
    assert "MOQUI: beam energy out of range" in case.failure_reason
    assert not (e2e.results / "bad beam").exists()
    assert comm.gpus()[0].status is GpuState.AVAILABLE


def test_hostile_case_names_complete_and_nothing_is_executed(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    token = secrets.token_hex(4)
    canaries = [f"mqi-canary-{token}-a", f"mqi-canary-{token}-b", f"mqi-canary-{token}-c"]
    names = [
        "with  two spaces",
        'quote\'s "double"',
        f"$(touch {canaries[0]}) `touch {canaries[1]}`",
        f"semi; touch {canaries[2]} & amp | pipe",
        "환자 01 \u2013 Müller",
        "-leading dash",
    ]
    comm = e2e.communicator(e2e.load(pueue_ssh_config(e2e, live_sshd, pueue)))
    for name in names:
        e2e.drop_case(name, slices=1)

    def all_ended() -> bool:
        cases = comm.cases()
        return len(cases) == len(names) and all(
            c.status in (CaseState.COMPLETED, CaseState.FAILED) for c in cases
        )

    tick_until(comm, all_ended, "every hostile-named case ended", limit_s=120)
    for name in names:
        assert_results_verified(e2e, comm, name)
    # Wherever a shell could have run an injected command, no canary appeared.
    places = [e2e.root, Path.home(), Path.cwd(), pueue.dir, Path("/tmp"), Path("/")]
    for place in places:
        for canary in canaries:
            assert not (place / canary).exists(), f"{place / canary}: a case name was executed"
    for canary in canaries:
        assert not list(e2e.root.rglob(canary))
        assert not list(pueue.dir.rglob(canary))
    assert os.listdir(e2e.results)  # sanity: the glob above looked at real folders
