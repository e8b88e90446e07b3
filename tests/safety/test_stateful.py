"""The stateful safety check: real Reconciler + real Store (SQLite) vs. a simulated world.

Runs the number of examples of the loaded Hypothesis profile (``ci``: 300,
``thorough``: 10,000 via ``MQI_HYPOTHESIS_PROFILE=thorough``). Figures (examples,
steps, crashes, the most healed ticks liveness needed, seconds) are printed with
``pytest -s`` and recorded as properties.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from .planted import release_on_kill_request
from .stateful_machine import REACHED, STATS, SafetyMachine, WarmSafetyMachine
from .stateful_support import CAS_MERGED

RecordProperty = Callable[[str, object], None]

#: Situations the CI run must reach, or its silence proves nothing.
REQUIRED = (
    "zombie",
    "zombie_recovered",
    "kill_requested",
    "offline_drained",
    "requeued",
    "completed",
    # issue 8: the timeout path, and the boundary situations (see stateful_boundary.py)
    "timeout_kill",
    "timeout_kill_failed",
    "unknown_liveness",
    "forged_marker",
    "detached_descendant",
    "stale_outcome_refused",
    # kills and lookups beside the tick (a pooled engine): one returned ticks later
    "beside_job_after_ticks",
) + (("second_engine_mid_tick", "second_engine_after_lease_expired") if CAS_MERGED else ())


def test_no_unkilled_gpu_is_freed(record_property: RecordProperty) -> None:
    for key in STATS:
        STATS[key] = 0
    REACHED.clear()
    t0 = time.perf_counter()
    run_state_machine_as_test(SafetyMachine)
    seconds = time.perf_counter() - t0
    figures = {**STATS, "seconds": round(seconds, 1)}
    figures["max_examples"] = settings.default.max_examples
    figures["step_count"] = settings.default.stateful_step_count
    print(f"\n[stateful] {figures}\n[stateful reached, examples] {REACHED}")
    for key, value in figures.items():
        record_property(f"stateful_{key}", value)
    assert STATS["examples"] >= settings.default.max_examples, figures
    # The run must get into the hard situations, or its silence proves nothing.
    for situation in REQUIRED:  # (id reuse under a live ref is rarer: printed, not required)
        assert REACHED.get(situation, 0) > 0, f"never reached {situation}: {REACHED}"


def test_planted_release_on_kill_request_is_caught() -> None:
    """With "release when the kill command returned" planted, Hypothesis finds a case.

    The warm machine (two cases already running) finds it in seconds; the cold one
    needs hundreds of examples (minutes), too slow for every CI run.
    """
    hunt = settings(
        max_examples=1000,
        stateful_step_count=40,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # shrinking a DB-backed run takes minutes
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    t0 = time.perf_counter()
    with release_on_kill_request(), pytest.raises(AssertionError, match="UNSAFE") as caught:
        run_state_machine_as_test(WarmSafetyMachine, settings=hunt)
    print(f"\n[stateful planted] found in {time.perf_counter() - t0:.1f}s:\n{caught.value}")
