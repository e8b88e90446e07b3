"""The ``mqi-communicator`` command line.

Each command module defines one click command or group; register it in ``_COMMANDS``.
Expected failures (:class:`~mqi_communicator.errors.MqiError`) are printed to stderr as
one line and exit with status 1, without a traceback; usage errors exit with 2.
"""

from __future__ import annotations

from typing import Any

import click
from alembic.util import CommandError
from sqlalchemy.exc import OperationalError

from ..errors import MqiError
from .commands import COMMANDS
from .db import db

__all__ = ["main"]


class _Group(click.Group):
    """A group that turns expected errors into a one-line message on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MqiError as err:
            raise click.ClickException(str(err)) from err
        except OperationalError as err:  # database unreachable, locked, refused login
            raise click.ClickException(f"database error: {err.orig}".strip()) from err
        except CommandError as err:  # alembic: unknown revision and the like
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mqi-communicator")
def main() -> None:
    """Run MOQUI QA cases on remote GPU servers, crash-safely."""


# One line per command module.
_COMMANDS: list[click.Command] = [db, *COMMANDS]
for _command in _COMMANDS:
    main.add_command(_command)
