"""The machine's new world facts have teeth: with today's adapter semantics planted, the
Hypothesis machine finds a GPU handed on while our job lives (issue 8, bugs 1 and 2).

* ``sees_descendants=False``: the probe does not see a detached descendant, so a job that
  ended but left ``setsid sleep 100000 &`` behind looks gone (bug 2);
* ``trusts_unsigned_markers=True``: a ``.mqi/exit`` the case brought along counts, so a job
  still waiting in the queue looks finished (bug 1).

Once the token branch gives the real adapters those semantics, the property tests in
``tests/properties`` check the adapters themselves; these only show the checker can fail.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import initialize, run_state_machine_as_test

from .stateful_machine import WarmSafetyMachine

_HUNT = settings(
    max_examples=1000,
    stateful_step_count=40,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.generate],  # shrinking a DB-backed run takes minutes
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


class _BlindToDescendants(WarmSafetyMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world.sees_descendants = False

    @initialize()
    def warm_start(self) -> None:
        """Two cases running; one job has just succeeded, leaving a detached descendant."""
        self._warm(2)
        self.job_event(0, "succeed_leaving_a_descendant")


class _TrustsForgedMarkers(WarmSafetyMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world.trusts_unsigned_markers = True

    @initialize()
    def warm_start(self) -> None:
        """Two forged cases claimed and submitted (their jobs wait in the queue)."""
        for _ in range(2):
            self.case_arrives(forged=True)
        self.tick()


@pytest.mark.parametrize("machine", [_BlindToDescendants, _TrustsForgedMarkers])
def test_planted_adapter_blind_spot_is_caught(machine: type[WarmSafetyMachine]) -> None:
    t0 = time.perf_counter()
    with pytest.raises(AssertionError, match="UNSAFE") as caught:
        run_state_machine_as_test(machine, settings=_HUNT)
    print(f"\n[{machine.__name__}] found in {time.perf_counter() - t0:.1f}s: {caught.value}")
