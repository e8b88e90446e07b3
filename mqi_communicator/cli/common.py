"""What the CLI commands share: ``--config``, ``--interval`` and opening a communicator."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .output import EXIT_USAGE, cli_errors, fail

if TYPE_CHECKING:
    from ..service import Communicator

__all__ = [
    "DEFAULT_CONFIG",
    "config_option",
    "interval_option",
    "open_communicator",
    "resolve_config",
]

#: Looked up in the current directory when neither ``--config`` nor MQI_CONFIG is given.
DEFAULT_CONFIG = "mqi-communicator.yaml"

F = TypeVar("F", bound=Callable[..., Any])


def config_option(fn: F) -> F:
    """Add ``--config PATH`` (default: env MQI_CONFIG, else ./mqi-communicator.yaml)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=f"Config file. Default: $MQI_CONFIG, else ./{DEFAULT_CONFIG}.",
    )(fn)


def interval_option(*, minimum: float, default: float, help: str) -> Callable[[F], F]:
    """Add ``--interval SECONDS`` for a command that polls (``top``, ``cases log -f``).

    At most a minute: a slower refresh would look like a hung command.
    """
    return click.option(
        "--interval",
        type=click.FloatRange(minimum, 60),
        default=default,
        show_default=True,
        help=help,
    )


def resolve_config(config_path: Path | None) -> Path:
    """The config file to use; exits 2 with a clear message when it does not exist."""
    if config_path is not None:
        path, origin = config_path, "--config"
    elif os.environ.get("MQI_CONFIG"):
        path, origin = Path(os.environ["MQI_CONFIG"]), "MQI_CONFIG"
    else:
        path, origin = Path(DEFAULT_CONFIG), "the default"
    if path.is_dir():
        fail(f"{path} (from {origin}) is a folder; name the config file itself", EXIT_USAGE)
    if not path.is_file():
        fail(
            f"config file not found: {path} (from {origin}); pass --config PATH or set "
            f"MQI_CONFIG (examples: `mqi-communicator check-config --help`)",
            EXIT_USAGE,
        )
    return path


@contextmanager
def open_communicator(config_path: Path | None, **kwargs: Any) -> Iterator[Communicator]:
    """Build a :class:`Communicator` from the config file and close it afterwards.

    Configuration and schema errors exit 2, other :class:`MqiError` exit 1, no traceback.
    """
    from ..service import Communicator  # the engine's imports: only for commands that use it

    path = resolve_config(config_path)

    with cli_errors():
        # Queries and operator actions only: no intake watcher, no engine lock.
        comm = Communicator.from_config_file(path, **{"watch": False, **kwargs})
        try:
            yield comm
        finally:
            comm.close()
