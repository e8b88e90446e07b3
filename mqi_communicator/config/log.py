"""The ``log:`` section: the rotating log file and its time zone."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from .validation import _resolve, _Strict

__all__ = ["LogConfig"]


class LogConfig(_Strict):
    """The rotating log file and the time zone its timestamps are written in."""

    file: Path | None = None
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: An IANA zone name, e.g. ``Asia/Seoul`` (the original site logs in KST).
    timezone: str = "UTC"
    max_bytes: PositiveInt = 10_000_000
    backups: int = Field(default=5, ge=0)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("file")
    @classmethod
    def _resolve_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(
                f"expected an IANA time zone such as 'Asia/Seoul', got {value!r}"
            ) from err
        return value
