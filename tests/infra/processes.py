"""Is a process group still there? (tests check that killed jobs really are gone)."""

from __future__ import annotations

import os
import time


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def group_gone(pgid: int, timeout: float = 10.0) -> bool:
    """True once no process of the group is left (orphans are reaped by init, eventually)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.02)
    return False
