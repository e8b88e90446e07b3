"""What both SSH transfer directions share: remote names, progress, one command's channel."""

from __future__ import annotations

import secrets

import paramiko

from mqi_communicator.errors import HostUnreachableError
from mqi_communicator.remote.protocol import ProgressCallback
from mqi_communicator.remote.ssh.exec import connection_lost, remaining
from mqi_communicator.remote.transfer.far_side_scripts import cleanup_script

__all__ = [
    "cleanup_command",
    "finish_channel",
    "normalize_remote_dir",
    "open_command",
    "partial_name",
    "report_progress",
]


def normalize_remote_dir(remote_dir: str) -> str:
    """Strip trailing slashes, prefix ``./`` to a leading ``-``; refuse ``""``, ``/``, ``.``."""
    norm = remote_dir.rstrip("/")
    if not norm or norm in (".", ".."):
        raise ValueError(f"unusable remote directory: {remote_dir!r}")
    if norm.startswith("-"):  # so no tool (find, tar) can mistake it for an option
        norm = "./" + norm
    return norm


def partial_name(remote_dir: str) -> str:
    """``<remote_dir>.partial-<random>``: where an upload lands before verification."""
    return f"{remote_dir}.partial-{secrets.token_hex(6)}"


def cleanup_command(partials: list[str]) -> str:
    """Shell text removing partial directories and their manifests (best effort)."""
    return cleanup_script(partials)


def report_progress(progress: ProgressCallback | None, done: int, total: int) -> None:
    """Call ``progress`` (if any) with ``done`` clamped to ``total``."""
    if progress is not None:
        progress(min(done, total), total)


def open_command(
    transport: paramiko.Transport, text: str, timeout: float, where: str, *, eof: bool = True
) -> paramiko.Channel:
    """Start ``text`` on a new channel; with ``eof`` its stdin is closed at once."""
    try:
        chan = transport.open_session(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise HostUnreachableError(f"{where}: cannot open a channel: {err}") from err
    try:
        chan.settimeout(timeout)
        chan.exec_command(text)
        if eof:
            chan.shutdown_write()
    except (paramiko.SSHException, OSError, EOFError) as err:
        chan.close()
        raise HostUnreachableError(f"{where}: cannot start a remote command: {err}") from err
    return chan


def finish_channel(
    chan: paramiko.Channel, transport: paramiko.Transport, deadline: float, what: str, where: str
) -> int:
    """Wait for ``chan``'s exit status; a drop raises ``HostUnreachableError``.

    Raises:
        TimeoutError: no status before ``deadline`` (callers map it).
    """
    chan.status_event.wait(remaining(deadline))
    if not chan.status_event.is_set():
        raise TimeoutError(f"no exit status from {what} before the deadline")
    if chan.exit_status == -1 and connection_lost(transport):
        raise HostUnreachableError(f"{where}: connection dropped during {what}")
    status: int = chan.exit_status
    return status
