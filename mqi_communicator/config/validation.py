"""What every config section shares: the strict base model and its validators' helpers.

Every model forbids unknown keys, so a misspelt key is an error rather than a silently
ignored default. Relative paths are resolved against the directory of the config file
(passed as validation context ``base_dir``), or the current directory for objects
built in code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

__all__ = ["_Strict", "_base_dir", "_fail", "_number_text", "_resolve"]


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context if isinstance(info.context, dict) else {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    value = value.expanduser()
    return value if value.is_absolute() else (_base_dir(info) / value).resolve()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _number_text(value: object) -> object:
    """YAML reads ``cuda_devices: 0`` as a number; such fields are text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _fail(path: str, msg: str) -> None:
    raise PydanticCustomError("at_path", "{path}: {msg}", {"path": path, "msg": msg})
