"""The vocabulary of field effects: what a table row sets on its row besides ``status``.

A row of :mod:`.tables` lists its effects as ``(field, value)`` pairs. A value is a
constant, :data:`NOW`, :class:`Given` (an input of the step: the claim's label, the
failure reason, ...) or :class:`Plus` (the field's current value plus a step). The store
applies whatever :func:`resolve` returns without knowing which trigger fired, and the
safety tests replay the audit trail with the same function.

Pure: no I/O, no clock (``now`` is an input).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

__all__ = ["NOW", "Effects", "Given", "Plus", "StepInputs", "describe", "resolve"]


@dataclass(frozen=True)
class StepInputs:
    """What a step may need beyond the rows themselves; the store fills what it knows.

    ``case_id``, ``label``, ``remote_dir``, ``host``, ``gpu_name`` and ``token`` describe
    the case's attempt (the claim's plan, or the case row); the rest come from the caller.
    """

    now: datetime
    case_id: int | None = None
    label: str | None = None
    remote_dir: str | None = None
    host: str | None = None
    gpu_name: str | None = None
    token: str | None = None
    failure_reason: str | None = None
    job_id: str | None = None
    retry_at: datetime | None = None
    kill_reason: str | None = None


class _Now:
    def __repr__(self) -> str:
        return "now"


#: The step's time.
NOW: Final = _Now()


@dataclass(frozen=True)
class Given:
    """The step input ``name``; when it is None: ``default``, or no change if ``keep``."""

    name: str
    default: object = None
    keep: bool = False


@dataclass(frozen=True)
class Plus:
    """The field's current value plus ``step``."""

    step: int = 1


Effects = tuple[tuple[str, object], ...]


def resolve(effects: Effects, current: object, given: StepInputs) -> dict[str, object]:
    """The field values ``effects`` set, for a row whose snapshot is ``current``."""
    out: dict[str, object] = {}
    for field, value in effects:
        if value is NOW:
            out[field] = given.now
        elif isinstance(value, Given):
            got = getattr(given, value.name)
            if got is None and value.keep:
                continue
            out[field] = value.default if got is None else got
        elif isinstance(value, Plus):
            out[field] = getattr(current, field) + value.step
        else:
            out[field] = value
    return out


def describe(value: object) -> str:
    """A value as the diagram shows it: ``now``, an input's name, ``+1``, or a constant."""
    if isinstance(value, Given):
        return value.name
    if isinstance(value, Plus):
        return f"+{value.step}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
