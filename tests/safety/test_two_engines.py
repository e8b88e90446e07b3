"""Issue 8, bug 3 in the simulated world: a second engine takes a case over during a long
upload, and the first engine's outcome for attempt 1 must not land on attempt 2.

Engine 1 claims the case and starts uploading attempt 1. The upload takes 4,000 s: past
``submit_grace`` and ``transfer_timeout_s``, so a transfer lease would have expired.
Meanwhile engine 2 (not exclusive, same database) recovers the case, revokes attempt 1's
start, requeues it and submits attempt 2. Then attempt 1's upload fails in engine 1.
Today that error is applied to the row as it is (attempt 2): ``requeue`` and a GPU
release with never-submitted evidence, while attempt 2's job runs. The ``cas`` branch
(compare-and-set on the attempt) makes the store refuse it; until it is merged this test
is a strict xfail, and the machine's ``second_engine_mid_tick`` rule stays off
(``stateful_support.CAS_MERGED``).
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
