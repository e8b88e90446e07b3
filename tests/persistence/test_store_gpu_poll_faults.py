"""GPU and host-poll faults in the database (migration 0007), on both backends.

A GPU's local errors are note fields written in one transaction (refused for a job the
GPU no longer holds) and reset by the tables when the GPU changes state; a host's poll
faults are columns of its ``host_health`` row, apart from up/down.
"""

from __future__ import annotations

import pytest

from mqi_communicator.errors import StaleOutcomeError
from mqi_communicator.persistence import Store
from mqi_communicator.persistence.host_health import (
    clear_poll_fault,
    read_host_health,
    record_host_health,
    record_poll_fault,
)
from mqi_communicator.statemachine import Evidence, EvidenceKind, GpuState

from .conftest import at, label_plan

GPU = "h/g0"


def _zombie(store: Store) -> str:
    """A case ran on ``GPU`` and its kill was never confirmed: the GPU is a zombie."""
    store.sync_gpus([(GPU, "h")], at(0))
    case, _ = store.register_case("/c1", at(0))
    claimed = store.claim(case.id, at(1), label_plan, [GPU])
    assert claimed is not None
    label = claimed[0].label
    assert label is not None
    store.apply(case.id, "confirm_submitted", None, None, evidence=None, now=at(2), job_id="7")
    lost = Evidence(EvidenceKind.KILL_UNCONFIRMED, label, at(3), detail="timeout")
    store.apply(case.id, "fail", GPU, "quarantine", evidence=lost, now=at(3))
    assert store.get_gpu(GPU).status is GpuState.ZOMBIE
    return label


def test_a_gpus_local_errors_are_noted_refused_when_stale_and_reset_on_recovery(
    store: Store,
) -> None:
    label = _zombie(store)
    g = store.update_gpu(
        GPU,
        at(4),
        detail="local error while checking the zombie (1 in a row)",
        expected_label=label,
        local_failures=1,
        last_error="checking the zombie: OSError: boom",
        next_attempt_at=at(9),
    )
    assert (g.local_failures, g.last_error, g.next_attempt_at) == (
        1,
        "checking the zombie: OSError: boom",
        at(9),
    )
    (note,) = [t for t in store.history(gpu_name=GPU) if t.trigger == "note"]
    assert "local_failures=1" in note.detail and note.from_state == note.to_state == "zombie"
    # About another job than the one the GPU holds: nothing written.
    with pytest.raises(StaleOutcomeError):
        store.update_gpu(GPU, at(5), detail="x", expected_label="other", local_failures=2)
    assert store.get_gpu(GPU).local_failures == 1

    gone = Evidence(EvidenceKind.CONFIRMED_ABSENT, label, at(6), detail="not there")
    store.apply(None, None, GPU, "recover", evidence=gone, now=at(6), expected_label=label)
    free = store.get_gpu(GPU)
    assert free.status is GpuState.AVAILABLE
    assert (free.local_failures, free.last_error, free.next_attempt_at) == (0, None, None)


def test_poll_faults_live_beside_the_hosts_health(store: Store) -> None:
    # A host never recorded: its poll fault makes a row that says up (it answered).
    store.write(
        lambda s: record_poll_fault(
            s, "h", at=at(1), failures=1, error="KeyError: 'state'", retry_at=at(6)
        )
    )
    rec = store.read(read_host_health)["h"]
    assert rec.up and rec.failures == 0
    assert (rec.poll_failures, rec.poll_error, rec.poll_next_at) == (1, "KeyError: 'state'", at(6))
    # Going down and up again leaves the poll's own count alone.
    store.write(lambda s: record_host_health(s, "h", up=False, at=at(7), failures=1, error="x"))
    store.write(lambda s: record_host_health(s, "h", up=True, at=at(8)))
    assert store.read(read_host_health)["h"].poll_failures == 1
    store.write(lambda s: clear_poll_fault(s, "h", at=at(9)))
    back = store.read(read_host_health)["h"]
    assert (back.poll_failures, back.poll_error, back.poll_next_at) == (0, "", None)
    assert back.up and back.since == at(8)
