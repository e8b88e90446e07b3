"""Settings, figures and helpers of the Hypothesis safety machine."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from mqi_communicator.engine import Backoff
from mqi_communicator.migrations.api import upgrade
from mqi_communicator.persistence import CaseRecord, Store
from mqi_communicator.statemachine.decide import Policy

__all__ = [
    "BACKOFF",
    "GPUS",
    "HEAL_TICKS_PER_CASE",
    "HOST",
    "MAX_CASES",
    "POLICY",
    "STATS",
    "T0",
    "heal_bound",
    "rows_text",
    "scratch_dir",
    "template_db",
    "traced",
]

HOST = "sim"
GPUS = ("sim/gpu0", "sim/gpu1")
MAX_CASES = 4
T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
POLICY = Policy(
    job_timeout=timedelta(hours=1), kill_confirm_window=timedelta(minutes=2), max_attempts=3
)
#: Host backoff capped at 8 s: a small time step is enough to try a host again.
BACKOFF = Backoff(base_s=1.0, factor=2.0, cap_s=8.0)
#: Liveness: a case that holds a GPU needs at most 3 ticks once the world is healed
#: (submit; observe the end; retrieve) and at worst cases get a GPU one at a time; a
#: leftover (submit to recover, zombie to recover, kill to confirm) costs one more tick.
HEAL_TICKS_PER_CASE = 4
#: Figures across examples, printed by the test.
STATS: dict[str, int] = {
    "examples": 0,
    "rules": 0,  # every rule run
    "steps": 0,  # rules that touch the database (engine, operator, crash)
    "crashes": 0,
    "max_heal_ticks": 0,
}


F = TypeVar("F", bound=Callable[..., None])


def traced(fn: F) -> F:
    """Keep the rules run in this example, to print them with a broken invariant."""

    @functools.wraps(fn)
    def run(self: Any, **kw: Any) -> None:
        args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        self.trail.append(f"{fn.__name__}({args})")
        STATS["rules"] += 1
        fn(self, **kw)

    return cast(F, run)


def heal_bound(n_cases: int) -> int:
    """Ticks the healed system may take to bring ``n_cases`` home (see above)."""
    return HEAL_TICKS_PER_CASE * n_cases + 4


def scratch_dir() -> str | None:
    """RAM-backed scratch space when there is one: SQLite commits cost less there."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@functools.cache
def template_db() -> Path:
    """An empty database at head, made once per process; examples copy it."""
    root = Path(tempfile.mkdtemp(prefix="mqi-safety-template-", dir=scratch_dir()))
    atexit.register(shutil.rmtree, root, True)
    path = root / "template.db"
    upgrade(f"sqlite:///{path}")
    for extra in ("-wal", "-shm"):
        leftover = path.with_name(path.name + extra)
        assert not leftover.exists() or leftover.stat().st_size == 0, leftover
    return path


def rows_text(store: Store) -> str:
    def case_line(c: CaseRecord) -> str:
        return f"  case {c.id}: {c.status.value} a{c.attempt} {c.label} gpu={c.gpu_name}"

    lines: list[Any] = [case_line(c) for c in store.list_cases()]
    lines += [
        f"  {g.name}: {g.status.value} case={g.case_id} job={g.job_label} "
        f"offline_requested={g.offline_requested}"
        for g in store.list_gpus()
    ]
    return "\n".join(lines)
