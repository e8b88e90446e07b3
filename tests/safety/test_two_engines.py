"""Issue 8, bug 3 in the simulated world: a second engine takes a case over during a long
upload, and the first engine's outcome for attempt 1 must not land on attempt 2.

Engine 1 claims the case and starts uploading attempt 1. The upload takes 4,000 s: past
``submit_grace`` and ``transfer_timeout_s``, so a transfer lease would have expired.
Meanwhile engine 2 (not exclusive, same database) recovers the case, revokes attempt 1's
start, requeues it and submits attempt 2. Then attempt 1's upload fails in engine 1.
Before the ``cas`` branch that error was applied to the row as it was (attempt 2):
``requeue`` and a GPU release with never-submitted evidence, while attempt 2's job ran.
The store's compare-and-set on the attempt now refuses it.

Both engines hold leases (several engines share a database only on PostgreSQL, where
none is exclusive). A 4,000 s call is longer than the lease's TTL: the machine expires
the frozen engine's leases (expiry is judged on the database's clock, which the fake
clock does not move), as README "Several communicators" describes.
"""

from __future__ import annotations

import pytest

from .stateful_machine import SafetyMachine
from .stateful_support import CAS_MERGED


@pytest.mark.xfail(not CAS_MERGED, strict=True, reason="issue 8 bug 3: needs the cas branch")
def test_takeover_during_a_long_upload_keeps_attempt_2s_gpu() -> None:
    machine = SafetyMachine()
    try:
        machine.case_arrives()
        # Engine 1's first remote call of the next tick is attempt 1's upload; it takes
        # longer than submit_grace and than the transfer timeout (a lease would expire).
        machine.second_engine_mid_tick(calls=0, delay=4000, ticks=2)
        machine.safe_and_consistent()  # no GPU handed on while attempt 2 runs
        machine.busy = False
    finally:
        machine.teardown()  # liveness: every case comes home once the world heals


def test_a_frozen_engines_late_submit_never_runs() -> None:
    """Engine 1 freezes INSIDE its submit call past its lease; engine 2 takes the case
    over (finds no job, revokes attempt 1's start, requeues it). Then engine 1's submit
    lands: its wrapper finds the start claim taken and runs nothing, and its outcome is
    dropped as stale. (The machine once counted that job as alive: its submit ignored
    the revoke, unlike a real wrapper.)"""
    machine = SafetyMachine()
    try:
        machine.case_arrives()
        machine.second_engine_mid_tick(calls=1, delay=2000, ticks=1)
        machine.safe_and_consistent()
        assert {"second_engine_after_lease_expired", "requeued"} <= machine.reached
        machine.busy = False
    finally:
        machine.teardown()
