"""How the CLI shows things: plain-text tables, JSON, and errors on stderr.

Records are frozen dataclasses; :func:`to_jsonable` turns them (and their datetimes,
enums and evidence) into JSON values, so ``--json`` output is machine-readable with
ISO-8601 times.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import PurePath
from typing import Any, NoReturn

import click

from ..errors import ConfigError, MqiError, SchemaMismatchError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "cli_errors",
    "echo_json",
    "exit_code_for",
    "fail",
    "fmt_time",
    "render_table",
    "to_jsonable",
]

EXIT_OK = 0
#: Something operational went wrong (a host is down, a case cannot be cancelled).
EXIT_FAILURE = 1
#: The command was used wrongly, or the configuration is invalid or missing.
EXIT_USAGE = 2


def to_jsonable(value: Any) -> Any:
    """A JSON-ready copy of ``value``: dataclasses to dicts, datetimes to ISO-8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def fmt_time(value: datetime | None) -> str:
    """A short human time (UTC as stored, to the second); ``-`` for None."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A left-aligned plain-text table with a dashed rule under the headers."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def exit_code_for(err: MqiError) -> int:
    """2 for configuration and schema problems (the user must fix something), else 1."""
    if isinstance(err, ConfigError | SchemaMismatchError):
        return EXIT_USAGE
    return EXIT_FAILURE


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn an :class:`MqiError` into a one-line message on stderr and an exit code.

    No traceback: these are expected failures that the message explains.
    """
    try:
        yield
    except MqiError as err:
        fail(str(err), exit_code_for(err))
