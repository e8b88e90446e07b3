"""Pueue command builders (pure): the shell text each remote command runs.

Pueue joins ``add``'s command words with spaces and runs them with ``sh -c``, so the
wrapper argv is passed as ONE pre-quoted word.

``pueue add`` runs with the attempt's token in its environment (``MQI_JOB_TOKEN``):
Pueue gives a task the environment of the ``add`` call, so the task's ``sh -c`` carries
the token from its first instruction. Without it, nothing carried the token between
Pueue spawning ``sh -c`` and the wrapper's re-exec; had pueued crashed then and its
restored ``Killed`` task been cleaned, the job would have read ABSENT while the wrapper
could still start.
"""

from __future__ import annotations

from collections.abc import Sequence

from mqi_communicator.remote.job.command import job_command
from mqi_communicator.remote.job.markers import (
    READ_TOKEN,
    TOKEN_ENV,
    install_snippet,
    wrapper_argv,
)
from mqi_communicator.remote.protocol import JobSpec
from mqi_communicator.remote.quoting import join_argv
from mqi_communicator.remote.schedulers.pueue.parse import STATUS_BEGIN, STATUS_END

__all__ = [
    "EXIT_INSTALL_FAILED",
    "framed_status",
    "kill_command",
    "observe_script",
    "submit_script",
]

#: The submit script's exit code when the wrapper could not be installed.
EXIT_INSTALL_FAILED = 97


def submit_script(pueue: Sequence[str], spec: JobSpec, group: str) -> str:
    """Install the wrapper (token from stdin), then ``pueue add`` it to ``group``.

    The token (checked by the install) is handed to the task through ``add``'s
    environment, never on a command line.
    """
    inner = join_argv(wrapper_argv(spec.remote_dir, spec.label, job_command(spec)))
    add = [*pueue, "add", "--print-task-id", "--label", spec.label]
    add += ["--group", group, "--", inner]
    return (
        f"{READ_TOKEN}{install_snippet(spec.remote_dir, spec.label)}"
        f" || exit {EXIT_INSTALL_FAILED}\n"
        f'{TOKEN_ENV}="$_mqi_tok" {join_argv(add)} </dev/null'
    )


def framed_status(pueue: Sequence[str], begin: str = STATUS_BEGIN, end: str = STATUS_END) -> str:
    """``pueue status --json`` between a ``begin`` line and an ``end <its exit code>`` line.

    Read back by :func:`~.parse.read_framed_status`.
    """
    status_cmd = join_argv([*pueue, "status", "--json"])
    return f"echo {begin}\n{status_cmd}\nprintf '\\n{end} %s\\n' \"$?\""


def observe_script(pueue: Sequence[str], probe: str) -> str:
    """The framed status, then ``probe`` (read by :func:`~.parse.parse_observation`)."""
    return f"{framed_status(pueue)}\n{probe}"


def kill_command(pueue: Sequence[str], task_id: str) -> str:
    """``pueue kill <task id>``."""
    return join_argv([*pueue, "kill", task_id])
