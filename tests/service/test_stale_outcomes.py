"""An outcome lands only on the attempt it was started for (issue 8, bug 3).

The engine runs for real (local transport and scheduler, real wrapper processes). While
attempt 1's upload or submit is under way, "another engine" takes the case over through
the store exactly as ``recover_submitting`` does (GPU released as never submitted, case
requeued) and claims attempt 2 on the same GPU. Whatever attempt 1's step then learns
(an upload error, a finished upload, a submit answer) must be dropped: attempt 2 and its
GPU stay as they are, and the log says so.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from mqi_communicator import CaseState, Communicator, GpuState
from mqi_communicator.engine.build import build_host
from mqi_communicator.errors import TransferError
from mqi_communicator.remote.protocol import JobSpec, remote_case_dir
from mqi_communicator.statemachine import Evidence, EvidenceKind
from tests.infra.hooked import HookedScheduler, HookedTransport

from .conftest import Workspace


def _take_over(comm: Communicator, case_id: int) -> None:
    """What a second engine's recovery does to attempt 1, then its claim of attempt 2."""
    store, now = comm.store, comm.reconciler.clock()
    case = store.get_case(case_id)
    assert case.status is CaseState.SUBMITTING and case.attempt == 1
    gone = Evidence(EvidenceKind.NEVER_SUBMITTED, case.label, now, detail="other engine")
    store.apply(case_id, "requeue", None, "release", evidence=gone, now=now)
    base = comm.hosts["local"].remote_base

    def plan(c: object, g: object) -> tuple[str, str]:
        return f"mqic-{case_id}-a2", remote_case_dir(base, case_id, 2)

    assert store.claim(case_id, now, plan=plan) is not None


def _engine(ws: Workspace, *, upload: str = "", submit: bool = False) -> Communicator:
    """A communicator whose attempt-1 upload or submit is overtaken by a takeover."""
    config = ws.config()
    real = build_host("local", config.hosts["local"])
    holder: list[Communicator] = []

    def before_upload(local_dir: Path, remote_dir: str) -> None:
        if upload and remote_dir.endswith("_a1"):
            _take_over(holder[0], 1)
            if upload == "error":
                raise TransferError("connection reset during upload")

    def before_submit(spec: JobSpec) -> None:
        if submit and spec.label.endswith("-a1"):
            _take_over(holder[0], 1)

    host = dataclasses.replace(
        real,
        transport=HookedTransport(real.transport, before_upload),
        scheduler=HookedScheduler(real.scheduler, before_submit),
    )
    comm = ws.communicator(config, hosts={"local": host}, watch=False)
    holder.append(comm)
    return comm


@pytest.mark.parametrize(
    ("upload", "submit"),
    [("error", False), ("done", False), ("", True)],
    ids=["upload-error", "upload-finished", "submit-answer"],
)
def test_attempt_1s_outcome_after_a_takeover_is_dropped(
    ws: Workspace, caplog: pytest.LogCaptureFixture, upload: str, submit: bool
) -> None:
    comm = _engine(ws, upload=upload, submit=submit)
    case = comm.register(ws.drop_case("patient 1"))
    with caplog.at_level(logging.WARNING, logger="mqi_communicator.engine"):
        report = comm.tick()
    after = comm.case(case.id)
    gpu = comm.gpus()[0]
    # Attempt 2 is exactly as its claim left it; its GPU is still held for it.
    assert (after.status, after.attempt, after.label) == (CaseState.SUBMITTING, 2, "mqic-1-a2")
    assert after.job_id is None and after.failure_reason is None
    assert (gpu.status, gpu.job_label, gpu.case_id) == (GpuState.ASSIGNED, "mqic-1-a2", 1)
    last = [t for t in comm.history(case_id=case.id) if t.entity == "case"][-1]
    assert (last.trigger, last.label) == ("claim", "mqic-1-a2")
    assert report.stale == 1
    assert "stale outcome for attempt 1 dropped" in caplog.text
    if upload == "done":
        # Attempt 1 was uploaded but never submitted: no wrapper ever ran there.
        assert not (ws.remote_base / "mqic_case_1_a1" / ".mqi" / "pgid").exists()
