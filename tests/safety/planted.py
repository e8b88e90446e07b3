"""Planted bugs: broken variants of the real rules, to show the checkers can fail.

``release_on_kill_request`` is the classic bug the project exists to prevent: treat
"the kill command returned 0" as proof the job is gone. It takes two edits to get past
the layered design, and both are planted:

* the guard ``termination_proven`` also accepts ``KILL_REQUESTED`` evidence, and
* the decision that gives up on an unconfirmed kill releases the GPU (with that
  evidence) instead of quarantining it.

Either edit alone is harmless: the other layer still refuses (``test_exhaustive`` shows
the guard alone stopping the decision bug).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest

from mqi_communicator.statemachine import CaseFacts, Evidence, EvidenceKind, GpuFacts
from mqi_communicator.statemachine import decide as decide_module
from mqi_communicator.statemachine import guards as guards_module

__all__ = ["broken_decision", "broken_guard", "release_on_kill_request"]


@contextmanager
def broken_guard() -> Iterator[None]:
    """Let ``KILL_REQUESTED`` evidence with the right label free a GPU."""
    real = guards_module.GPU_GUARDS["termination_proven"]

    def accepts_kill_request(gpu: GpuFacts, evidence: Evidence | None) -> bool:
        if evidence is not None and evidence.kind is EvidenceKind.KILL_REQUESTED:
            return evidence.label == gpu.job_label
        return real(gpu, evidence)

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(guards_module.GPU_GUARDS, "termination_proven", accepts_kill_request)
        yield


@contextmanager
def broken_decision() -> Iterator[None]:
    """Give up on an unconfirmed kill by releasing the GPU "because we asked for a kill"."""
    real = decide_module._give_up_kill

    def release_instead(case: CaseFacts, now: datetime, why: str) -> decide_module.Apply:
        quarantine = real(case, now, why)
        assert quarantine.evidence is not None
        evidence = dataclasses.replace(quarantine.evidence, kind=EvidenceKind.KILL_REQUESTED)
        return dataclasses.replace(quarantine, gpu_trigger="release", evidence=evidence)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decide_module, "_give_up_kill", release_instead)
        yield


@contextmanager
def release_on_kill_request() -> Iterator[None]:
    """Both halves of the bug at once: the GPU is freed when the kill command returns."""
    with broken_guard(), broken_decision():
        yield
