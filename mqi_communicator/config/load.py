"""Read a YAML config file, apply environment overrides, validate, explain errors.

Errors are :class:`~mqi_communicator.errors.ConfigError` with one line per problem,
each naming the file, the key path and what was expected, e.g.::

    config.yaml: hosts.gpu1.scheduler.kind: expected one of 'local', 'pueue', 'slurm', got 'pueu'

Environment overrides: ``MQI__ENGINE__POLL_INTERVAL_S=5`` sets ``engine.poll_interval_s``
(a double underscore separates levels; keys match case-insensitively with ``-`` written
as ``_``; list items are addressed by index, e.g. ``MQI__GPUS__0__CUDA_DEVICES``);
values are parsed as YAML scalars. ``MQI_DATABASE_URL``
overrides ``database_url``.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .model import Config

__all__ = ["ENV_PREFIX", "apply_env_overrides", "load_config", "parse_config"]

#: Prefix of nested overrides: ``MQI__A__B=value`` sets ``a.b``.
ENV_PREFIX = "MQI__"
#: Overrides ``database_url`` (the usual name for a secret-bearing URL).
ENV_DATABASE_URL = "MQI_DATABASE_URL"


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the YAML config at ``path``.

    Args:
        path: The YAML file. Relative paths inside it are relative to its directory.
        env: Environment for overrides; ``os.environ`` when None.

    Raises:
        ConfigError: the file cannot be read or parsed, or a value is invalid.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{file}: cannot read the config file: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{file}: not a UTF-8 text file (byte {err.start}); a config file is YAML text"
        ) from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{file}: {where}not valid YAML: {problem}") from err
    if data is None:
        data = {}
    return parse_config(data, source=str(file), base_dir=file.resolve().parent, env=env)


def parse_config(
    data: object,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate an already parsed mapping (e.g. from YAML) into a :class:`Config`.

    Args:
        data: The mapping.
        source: Named in error messages (usually the file path).
        base_dir: Relative paths are resolved against it (default: the current directory).
        env: Environment for overrides; ``os.environ`` when None.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys at the top level, got {_kind(data)}"
        )
    data, origins = apply_env_overrides(data, os.environ if env is None else env)
    context = {"base_dir": base_dir if base_dir is not None else Path.cwd()}
    try:
        return Config.model_validate(data, context=context)
    except ValidationError as err:
        lines = [f"{source}: {_explain(e, origins)}" for e in err.errors(include_url=False)]
        raise ConfigError("\n".join(lines)) from err


def apply_env_overrides(
    data: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of ``data`` with ``MQI__...`` and ``MQI_DATABASE_URL`` applied.

    Returns:
        The new mapping and, for error messages, ``{key path: env variable}``.
    """
    out = _deep_copy(data)
    origins: dict[str, str] = {}
    for name in sorted(env):
        if name == ENV_DATABASE_URL:
            out["database_url"] = env[name]
            origins["database_url"] = name
            continue
        if not name.upper().startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        parts = [p for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        value = _scalar(env[name])
        path = _set_path(out, parts, value, name)
        origins[path] = name
    return out, origins


def _scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # Only scalars: a value that parses as a mapping or list stays a string.
    return value if not isinstance(value, dict | list) else text


def _set_path(root: dict[str, Any], parts: list[str], value: Any, var: str) -> str:
    node: Any = root
    shown: list[str] = []
    for i, raw in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not raw.isdigit() or int(raw) >= len(node):
                raise ConfigError(
                    f"{var}: {'.'.join(shown)}: expected a list index below {len(node)}, "
                    f"got {raw!r}"
                )
            key: Any = int(raw)
            shown[-1] += f"[{key}]"
        elif isinstance(node, dict):
            # Keys match case-insensitively and with '-' as '_': shells cannot export
            # MQI__HOSTS__GPU-SERVER__..., so GPU_SERVER reaches host "gpu-server".
            key = next((k for k in node if _env_key(str(k)) == _env_key(raw)), raw.lower())
            shown.append(str(key))
        else:
            raise ConfigError(
                f"{var}: {'.'.join(shown)} is not a mapping; cannot set {raw!r} in it"
            )
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]
    return ".".join(shown)


def _env_key(name: str) -> str:
    return name.lower().replace("-", "_")


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _path_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _explain(error: ErrorDetails, origins: Mapping[str, str]) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = error.get("input")
    if kind == "at_path":
        path = _path_text((*loc, str(ctx["path"]))) if loc else str(ctx["path"])
        return f"{path}: {ctx['msg']}"
    path = _path_text(loc) or "(top level)"
    origin = origins.get(path)
    if origin:
        path += f" (from {origin})"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"{path}: unknown key{hint}"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        return f"{path}: expected one of {expected}, got {got!r}"
    if kind == "value_error":
        return f"{path}: {ctx.get('error', error['msg'])}"
    msg = error["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{path}: expected {msg.removeprefix('input should be ')}, got {got!r}"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts (walks models, dicts and lists)."""
    tp: Any = Config
    for part in loc:
        tp = _model_arm(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
            continue
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is dict and len(args) == 2:
            tp = args[1]
        elif origin is list and args:
            tp = args[0]
        else:
            return []
    tp = _model_arm(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _model_arm(tp: Any) -> Any:
    """For ``Model | None`` return ``Model``; anything else unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            if isinstance(arm, type) and issubclass(arm, BaseModel):
                return arm
    return tp
