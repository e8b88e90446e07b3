"""The ``intake:`` section: how directories in the watch folder become cases."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, field_validator

from .validation import _Strict

__all__ = ["IntakeConfig"]


class IntakeConfig(_Strict):
    """How directories in the watch folder become cases."""

    #: A directory is a case once nothing under it changed for this long.
    quiescence_s: float = Field(default=5.0, ge=0)
    #: When set, a directory is a case once this file exists in it (quiescence ignored).
    ready_marker: str | None = None
    #: Full rescans of the watch folder, in case the file-system watcher missed events.
    scan_interval_s: PositiveFloat = 30.0

    @field_validator("ready_marker")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value):
            raise ValueError("expected a plain file name (no directories)")
        return value
