"""How the CLI shows things: plain-text tables, JSON, and errors on stderr.

Records are frozen dataclasses; :func:`to_jsonable` turns them (and their datetimes,
enums and evidence) into JSON values, so ``--json`` output is machine-readable with
ISO-8601 times. Every cell and message goes through
:func:`~mqi_communicator.textsafe.printable`: a case name cannot drive the terminal.

:func:`describe_failure` is the one place where an expected failure becomes a one-line
message and an exit code; the command group and :func:`cli_errors` both use it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import PurePath
from typing import Any, NoReturn

import click
from sqlalchemy.exc import DatabaseError, OperationalError

from ..display import fmt_time
from ..errors import ConfigError, LegacyAdoptionError, MqiError, SchemaMismatchError
from ..persistence.engine_setup import ERROR_DATABASE_ATTR
from ..textsafe import printable

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "cli_errors",
    "describe_failure",
    "echo_json",
    "exit_code_for",
    "fail",
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


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


#: What ``json.dumps(ensure_ascii=False)`` leaves raw although a terminal acts on it:
#: DEL, the C1 controls (0x9b is a one-byte CSI), bidi and line-separator characters.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (no raw control character in it)."""
    text = json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)
    click.echo(_JSON_UNSAFE.sub(_json_escape, text))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, Enum):
        return str(value.value)
    return printable(value)


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
    click.echo(f"error: {printable(message, keep_newlines=True)}", err=True)
    raise SystemExit(code)


def exit_code_for(err: MqiError) -> int:
    """2 for configuration and schema problems (the user must fix something), else 1."""
    if isinstance(err, ConfigError | SchemaMismatchError | LegacyAdoptionError):
        return EXIT_USAGE
    return EXIT_FAILURE


def describe_failure(err: BaseException) -> tuple[str, int] | None:
    """The message and exit code of an expected failure; None for anything else (a bug).

    Expected: our own errors; the database unreachable, locked or read-only (1); a file
    that is not a database (2); Alembic refusing a revision (1); the operating system
    refusing a file (1). A bug keeps its traceback, which is what a bug report needs.
    """
    if isinstance(err, MqiError):
        return str(err), exit_code_for(err)
    if isinstance(err, DatabaseError):
        where = getattr(err, ERROR_DATABASE_ATTR, None)
        which = f"database error on {where}" if where else "database error"
        if isinstance(err, OperationalError):  # unreachable, locked, refused login, read-only
            return (
                f"{which}: {err.orig}; check the database URL, that the database is "
                "reachable and that its file and folder are writable by this user",
                EXIT_FAILURE,
            )
        if type(err) is DatabaseError:  # sqlite: a corrupt file
            return (
                f"{which}: {err.orig}; the database URL (--db, database_url or "
                "MQI_DATABASE_URL) must name an intact mqi-communicator database",
                EXIT_USAGE,
            )
    # Alembic (~0.2 s to import) is loaded only by the commands that migrate; an error
    # of its kind can exist only once it is loaded.
    alembic_util = sys.modules.get("alembic.util")
    if alembic_util is not None and isinstance(err, alembic_util.CommandError):
        return str(err), EXIT_FAILURE
    if isinstance(err, OSError):
        where = f" {err.filename!r}" if err.filename is not None else ""
        return (
            f"cannot use{where}: {err.strerror or err}; check that it exists and that "
            "this user may read and write it",
            EXIT_FAILURE,
        )
    return None


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn an expected failure (:func:`describe_failure`) into one line on stderr and exit.

    No traceback: these are expected failures that the message explains.
    """
    try:
        yield
    except Exception as err:
        known = describe_failure(err)
        if known is None:
            raise
        fail(*known)
