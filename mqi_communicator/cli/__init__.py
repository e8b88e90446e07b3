"""The ``mqi-communicator`` command line.

Each command module defines one click command or group; register it in ``_COMMANDS``.
Expected failures (our errors, database and file-system refusals: see
:func:`~mqi_communicator.cli.output.describe_failure`) are printed to stderr as one line
and exit with status 1, or 2 when the user must fix an argument or the configuration;
no traceback.
"""

from __future__ import annotations

from typing import Any

import click

from .commands import COMMANDS
from .db import db
from .output import cli_errors

__all__ = ["main"]


class _Group(click.Group):
    """A group that turns expected errors into a one-line message on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        with cli_errors():
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mqi-communicator")
def main() -> None:
    """Run MOQUI QA cases on remote GPU servers, crash-safely."""


# One line per command module.
_COMMANDS: list[click.Command] = [db, *COMMANDS]
for _command in _COMMANDS:
    main.add_command(_command)
