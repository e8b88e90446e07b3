"""The ``mqi-communicator`` command line.

Each command module defines one click command or group; register it in
:data:`~mqi_communicator.cli.commands.COMMANDS`, which loads it on first use.
Expected failures (our errors, database and file-system refusals: see
:func:`~mqi_communicator.cli.output.describe_failure`) are printed to stderr as one line
and exit with status 1, or 2 when the user must fix an argument or the configuration;
no traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from .commands import COMMANDS
from .output import cli_errors

__all__ = ["main"]


class _Group(click.Group):
    """Loads a command's module only when it runs; turns expected errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        del ctx
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        del ctx
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module, __package__), attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        with cli_errors():
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mqi-communicator")
def main() -> None:
    """Run MOQUI QA cases on remote GPU servers, crash-safely."""
