"""Settings, figures and helpers of the Hypothesis safety machine."""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from mqi_communicator import errors
from mqi_communicator.engine import Backoff
from mqi_communicator.migrations.api import upgrade
from mqi_communicator.persistence import CaseRecord, Store
from mqi_communicator.statemachine import Evidence
from mqi_communicator.statemachine.decide import Policy

__all__ = [
    "BACKOFF",
    "CAS_MERGED",
    "GPUS",
    "HEAL_TICKS_PER_CASE",
    "HOST",
    "MAX_CASES",
    "POLICY",
    "STATS",
    "T0",
    "apply_for_attempt",
    "heal_bound",
    "refusals_noted",
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
    "pooled": 0,  # examples whose engine ran kills and lookups beside the tick
    "max_heal_ticks": 0,
    "stale_refused": 0,  # stale outcomes the store refused
    "lease_expired": 0,  # second engines that ran after this engine's leases expired
}

#: The store's compare-and-set on the attempt (``expected_label``, ``StaleOutcomeError``)
#: is being added on the ``cas`` branch. Until it is merged the second-engine rule stays
#: off: today's engine applies engine 1's stale outcome to engine 2's attempt (bug 3).
CAS_MERGED = hasattr(errors, "StaleOutcomeError")
_REFUSED: tuple[type[Exception], ...] = (errors.ConflictError,) + (
    (errors.StaleOutcomeError,) if CAS_MERGED else ()  # type: ignore[attr-defined]
)


def apply_for_attempt(
    store: Store,
    attempt: CaseRecord,
    case_trigger: str,
    gpu_trigger: str | None,
    evidence: Evidence,
    now: datetime,
) -> bool:
    """Apply a step that belongs to ``attempt`` (a row read when it was current).

    Compare-and-set on that attempt: ``expected_label`` once the store has it, until then
    the row's version (stricter: any change since refuses). False when refused.
    """
    if "expected_label" in inspect.signature(store.apply).parameters:
        cas: dict[str, Any] = {"expected_label": attempt.label}
    else:
        cas = {"expected_case_version": attempt.version}
    try:
        store.apply(
            attempt.id,
            case_trigger,
            None,
            gpu_trigger,
            evidence=evidence,
            now=now,
            detail="outcome of an earlier attempt",
            **cas,
        )
    except _REFUSED:
        return False
    return True


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


def refusals_noted(apply: Callable[..., Any], refused: list[str]) -> Callable[..., Any]:
    """``Store.apply`` that notes every step a guard refuses (then raises as before).

    The engine logs and drops a refused step, so nothing in the rows shows it; yet a
    decision the guards refuse is a decision that disagrees with the safety rules (e.g. a
    give-up that releases instead of quarantining leaves the case stuck, unnoticed).
    """

    @functools.wraps(apply)
    def noted(*args: Any, **kw: Any) -> Any:
        try:
            return apply(*args, **kw)
        except errors.GuardRejectedError as err:
            refused.append(str(err))
            raise

    return noted


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
