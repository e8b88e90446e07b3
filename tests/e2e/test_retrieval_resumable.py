"""Retrieval is resumable (issue #10): a failed download backs off and tries again, a full
results disk waits with a visible reason, and ``cases retry`` of a retrieval failure
downloads again without a new job when the results are still on the far side.

Real parts throughout: the loopback sshd, the Pueue stand-in (its task list is the
record of how many jobs ran), real jobs, and real filesystem errors: a 1 MB tmpfs as
the results disk (a real ENOSPC, reported by GNU tar), a stopped sshd, and a case whose
every possible results folder is taken by folders that are not its own (a results
folder is never replaced: FileExistsError). On the code before, the full disk failed
the case after ``max_retrieve_failures`` ticks, downloads were retried every tick with no
backoff, and ``cases retry`` always ran the job again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from mqi_communicator import CaseState, Communicator
from mqi_communicator.cli import main
from mqi_communicator.engine.results_place import candidate_folders
from tests.infra.pueue import PueueStandin
from tests.infra.sshd import SshServer
from tests.infra.tmpfs import small_tmpfs

from .conftest import E2E, case_named, pueue_ssh_config, reaches, tick_until

pytestmark = pytest.mark.ssh

BIG = "mkdir -p output && head -c 2000000 /dev/urandom > output/dose.bin"


def _jobs(pueue: PueueStandin) -> int:
    """How many jobs were ever submitted to the stand-in."""
    return len(json.loads(pueue.cli("status", "--json", check=True).stdout)["tasks"])


def _cli(path: Path, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--config", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _case(comm: Communicator, name: str):  # type: ignore[no-untyped-def]
    case = case_named(comm, name)
    assert case is not None
    return case


def test_a_full_results_disk_waits_then_downloads_without_rerun(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    path = pueue_ssh_config(
        e2e,
        live_sshd,
        pueue,
        command=BIG,
        engine={"max_retrieve_failures": 2, "max_local_failures": 2},
    )
    with small_tmpfs(e2e.results, "1m"):
        comm = e2e.communicator(e2e.load(path))
        e2e.drop_case("big")
        tick_until(
            comm,
            lambda: case_named(comm, "big") is not None and _case(comm, "big").storage_waits >= 4,
            "the case waits for the disk, past every failure limit",
        )
        waiting = _case(comm, "big")
        assert waiting.status is CaseState.RETRIEVING
        assert waiting.last_error is not None
        assert waiting.last_error.startswith("waiting: results disk full (needs 1.9 MB, ")
        assert waiting.next_attempt_at is not None
        shown = _cli(path, "cases", "show", str(waiting.id))
        assert "waiting: results disk full" in shown and "next attempt (UTC)" in shown
        status = _cli(path, "status")
        assert "cases held back (1)" in status and "results disk full" in status

        # The operator makes room: the very same job's results come home.
        subprocess.run(["mount", "-o", "remount,size=16m", str(e2e.results)], check=True)
        tick_until(comm, reaches(comm, "big", CaseState.COMPLETED), "completed")
        done = _case(comm, "big")
        assert done.attempt == 1 and done.last_error is None
        assert (e2e.results / "big" / "dose.bin").stat().st_size == 2_000_000
        assert _jobs(pueue) == 1


def test_a_failed_download_backs_off_and_resumes_without_rerun(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    path = pueue_ssh_config(e2e, live_sshd, pueue, engine={"max_retrieve_failures": 10})
    comm = e2e.communicator(e2e.load(path))
    e2e.drop_case("c")
    tick_until(comm, reaches(comm, "c", CaseState.RETRIEVING), "job succeeded")
    live_sshd.stop()
    retry_at: dict[int, datetime] = {}

    def failed_three_times() -> bool:
        case = _case(comm, "c")
        if case.transient_failures and case.next_attempt_at is not None:
            retry_at[case.transient_failures] = case.next_attempt_at
        return case.transient_failures >= 3

    tick_until(comm, failed_three_times, "three failed downloads")
    assert _case(comm, "c").status is CaseState.RETRIEVING
    assert sorted(retry_at) == [1, 2, 3]
    # Exponential (base 0.3 s, factor 2): each retry time is at least the next delay
    # after the previous one.
    assert (retry_at[2] - retry_at[1]).total_seconds() >= 0.6
    assert (retry_at[3] - retry_at[2]).total_seconds() >= 1.2
    assert "retrieving: " in (_case(comm, "c").last_error or "")
    live_sshd.start()
    tick_until(comm, reaches(comm, "c", CaseState.COMPLETED), "downloaded once sshd is back")
    assert _case(comm, "c").attempt == 1
    assert _jobs(pueue) == 1


def test_retry_of_a_retrieval_failure_downloads_again_or_reruns(
    e2e: E2E, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    kept, gone = "k" * 250, "g" * 250
    path = pueue_ssh_config(e2e, live_sshd, pueue, engine={"max_local_failures": 2})
    e2e.results.mkdir(parents=True, exist_ok=True)
    comm = e2e.communicator(e2e.load(path))
    e2e.drop_case(kept)
    e2e.drop_case(gone)
    tick_until(comm, lambda: len(comm.cases()) == 2, "both registered")
    # Results are placed only after a later tick sees the job end: block them all now.
    blocked = [
        f for n in (kept, gone) for f in candidate_folders(e2e.results, n, _case(comm, n).id)
    ]
    for folder in blocked:
        folder.mkdir()
    for name in (kept, gone):
        tick_until(comm, reaches(comm, name, CaseState.FAILED), f"{name[:3]}... failed")
        reason = _case(comm, name).failure_reason or ""
        assert "local error while retrieving" in reason and "no free results folder" in reason
    assert _jobs(pueue) == 2
    for folder in blocked:
        folder.rmdir()  # the operator clears the way
    gone_case = _case(comm, gone)
    assert gone_case.remote_dir is not None
    shutil.rmtree(Path(gone_case.remote_dir) / "output")  # loopback: the far side is here

    again = _cli(path, "cases", "retry", str(_case(comm, kept).id))
    assert "retrieving, attempt 1" in again and "downloading them again (no new job)" in again
    rerun = _cli(path, "cases", "retry", str(gone_case.id))
    assert "submitted, attempt 2" in rerun and "the job runs again as attempt 2" in rerun

    for name in (kept, gone):
        tick_until(comm, reaches(comm, name, CaseState.COMPLETED), f"{name[:3]}... completed")
    assert _case(comm, kept).attempt == 1 and _case(comm, gone).attempt == 2
    assert _jobs(pueue) == 3  # one new job: the rerun only
    details = [t.detail for t in comm.history(case_id=_case(comm, kept).id)]
    assert any("still in gpu-server:" in d and "no new job" in d for d in details)
    assert (e2e.results / kept / "dose.bin").stat().st_size == 4096
