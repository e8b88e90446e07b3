"""Shell quoting for commands run by a POSIX remote shell.

Everything that reaches the remote shell as text passes through here, so a case
named ``a b'$(rm -rf ~)"`` arrives as exactly that name and runs nothing: every
argument is single-quoted (:func:`shlex.join` semantics), which a POSIX shell
takes literally, newlines and unicode included.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

__all__ = ["env_prefix", "join_argv", "quote", "render_command"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def quote(arg: str) -> str:
    """Quote one argument for a POSIX shell.

    Args:
        arg: Any string; NUL bytes are refused (no shell can pass them).

    Returns:
        A word the shell turns back into exactly ``arg``.

    Raises:
        ValueError: ``arg`` contains a NUL byte.
    """
    if "\0" in arg:
        raise ValueError(f"argument contains a NUL byte: {arg!r}")
    return shlex.quote(arg)


def join_argv(argv: Sequence[str]) -> str:
    """Quote ``argv`` argument by argument and join with spaces (``shlex.join``)."""
    if isinstance(argv, str):  # a str is a Sequence[str]; joining its letters is a bug
        raise TypeError("join_argv takes a sequence of arguments, not a str")
    return " ".join(quote(a) for a in argv)


def env_prefix(env: Mapping[str, str]) -> str:
    """``env K=V ...`` with every assignment quoted, or ``""`` for an empty mapping.

    Raises:
        ValueError: a key is not a valid environment variable name.
    """
    if not env:
        return ""
    for key in env:
        if not _ENV_NAME.match(key):
            raise ValueError(f"invalid environment variable name: {key!r}")
    return "env " + " ".join(quote(f"{k}={v}") for k, v in env.items()) + " "


def render_command(command: Sequence[str] | str, env: Mapping[str, str] | None = None) -> str:
    """The text a remote POSIX shell should run for ``command``.

    A sequence is quoted argument by argument; a str is a shell snippet used verbatim.
    With ``env``, a sequence becomes ``env K=V argv...`` and a snippet becomes
    ``env K=V sh -c '<snippet>'`` so the variables reach every part of it.
    """
    prefix = env_prefix(env or {})
    if isinstance(command, str):
        if not prefix:
            return command
        return prefix + "sh -c " + quote(command)
    if not command:
        raise ValueError("empty command")
    return prefix + join_argv(command)
