"""Running one command on a raw paramiko exec channel of a kept connection.

Raw ``exec_command`` on the kept transport took 2.4 ms here against 14.5 ms for
Fabric's ``run`` (which sets up runners, watchers and threads per call).
"""

from __future__ import annotations

import threading
import time

import paramiko

from mqi_communicator.errors import HostUnreachableError
from mqi_communicator.remote.protocol import CommandResult

__all__ = ["ChannelDrain", "connection_lost", "exec_command", "remaining", "send_all"]

#: Bytes handed to ``Channel.send`` per call: OpenSSH's session packet size.
SEND_PIECE = 1 << 15


def _brief(command: str, limit: int = 200) -> str:
    """The command for an error message: a batched poll script can be hundreds of KB."""
    text = repr(command)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(command)} chars)"


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (monotonic), never negative."""
    return max(0.0, deadline - time.monotonic())


def connection_lost(transport: paramiko.Transport, grace: float = 1.0) -> bool:
    """True when ``transport`` is dead, allowing ``grace`` s for it to notice.

    paramiko closes a dead transport's channels just before it marks itself inactive,
    so a channel that closed without an exit status needs this short look.
    """
    end = time.monotonic() + grace
    while transport.is_active():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def send_all(chan: paramiko.Channel, data: bytes) -> None:
    """Send all of ``data`` on ``chan``, like ``Channel.sendall`` but in linear time.

    ``sendall`` re-slices the rest of its buffer after every packet (a 1 MiB chunk
    is copied ~32 times in 32 KiB packets): on loopback a channel carried about
    200 MB/s with it against 390 MB/s with this. We hand ``send`` packet-sized slices.

    Raises:
        TimeoutError: the peer's window stayed full past the channel's timeout.
        OSError: the channel closed before everything was sent.
    """
    view = memoryview(data)
    off, end = 0, len(data)
    while off < end:
        off += chan.send(view[off : off + SEND_PIECE].tobytes())


class ChannelDrain:
    """Reads a channel's stdout or stderr to EOF in a daemon thread.

    Draining both streams concurrently means a full flow-control window on one
    cannot block the other (or our own sending).
    """

    def __init__(self, chan: paramiko.Channel, *, stderr: bool) -> None:
        self._recv = chan.recv_stderr if stderr else chan.recv
        self._parts: list[bytes] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while data := self._recv(1 << 16):
                self._parts.append(data)
        except (OSError, EOFError, paramiko.SSHException) as err:
            self.error = err

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True when the stream reached EOF."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def raw(self) -> bytes:
        """Everything read so far, as bytes."""
        return b"".join(self._parts)

    def text(self) -> str:
        """Everything read so far, decoded leniently."""
        return b"".join(self._parts).decode("utf-8", errors="replace")


def exec_command(
    transport: paramiko.Transport,
    command: str,
    *,
    timeout: float,
    stdin: bytes | None,
    where: str,
) -> CommandResult:
    """Run ``command`` (shell text) on a new channel of ``transport``.

    Args:
        transport: An active paramiko transport.
        command: Text for the remote login shell.
        timeout: Seconds for the whole call.
        stdin: Bytes to send, then EOF.
        where: Host description for error messages.

    Raises:
        HostUnreachableError: the channel could not be opened, the connection dropped,
            or the call exceeded ``timeout``.
    """
    deadline = time.monotonic() + timeout
    try:
        chan = transport.open_session(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise HostUnreachableError(f"{where}: cannot open a channel: {err}") from err
    try:
        chan.settimeout(max(timeout, 0.001))
        chan.exec_command(command)
        out = ChannelDrain(chan, stderr=False)
        err_drain = ChannelDrain(chan, stderr=True)
        try:
            if stdin:
                send_all(chan, stdin)
            chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            # The command may have exited without reading its stdin; its exit status
            # (or the transport's death) below tells which.
            pass
        done = out.join(remaining(deadline)) and err_drain.join(remaining(deadline))
        if done:
            chan.status_event.wait(remaining(deadline))
        if not done or not chan.status_event.is_set():
            if not transport.is_active():
                raise HostUnreachableError(f"{where}: connection dropped during {_brief(command)}")
            raise HostUnreachableError(
                f"{where}: command exceeded its {timeout:g} s timeout: {_brief(command)}"
            )
        status = chan.exit_status
        if status == -1 and connection_lost(transport):
            raise HostUnreachableError(f"{where}: connection dropped during {_brief(command)}")
        return CommandResult(status, out.text(), err_drain.text())
    except TimeoutError as err:
        raise HostUnreachableError(
            f"{where}: command exceeded its {timeout:g} s timeout: {_brief(command)}"
        ) from err
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise HostUnreachableError(
            f"{where}: connection failed during {_brief(command)}: {err}"
        ) from err
    finally:
        chan.close()
