"""One short command that tells the sender how fast the link is and whether zstd is there.

The far side prints the path of its ``zstd`` (or nothing), then reads our probe
bytes: it prints ``a`` after the first :data:`LEAD` bytes and ``b`` at EOF. The
link's raw-byte rate is the bytes between the two marks over the time between their
ARRIVALS here: both marks travel back the same way, so the return latency, the
login shell's start-up and our send buffers (which fill at once) all cancel out.

The probe bytes are random (SSH does not compress by default; if it did, the rate
would be the compressed one, as it should). On loopback the "link" is the CPU-bound
SSH pipe, which is exactly what an uncompressed upload gets too.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import paramiko

from mqi_communicator.errors import HostUnreachableError, TransferError
from mqi_communicator.remote.ssh.exec import SEND_PIECE, remaining, send_all
from mqi_communicator.remote.transfer.ssh_channel import open_command

__all__ = ["LEAD", "LinkProbe", "probe_link", "probe_script"]

#: Bytes the far side reads before its first mark (past TCP's first round trips).
LEAD = 2 << 20
#: Disables zstd on the far side (tests, or a far side whose zstd misbehaves).
NO_ZSTD_ENV = "MQI_REMOTE_NO_ZSTD"

_PROBE = """z=
[ -z "${{MQI_REMOTE_NO_ZSTD:-}}" ] && z=$(command -v zstd 2>/dev/null)
case "$z" in /*) "$z" -V >/dev/null 2>&1 || z= ;; *) z= ;; esac
printf 'z=%s\\n' "$z"
head -c {lead} >/dev/null; echo a
cat >/dev/null; echo b
"""


def probe_script() -> str:
    """The far side's half of the probe (POSIX sh)."""
    return _PROBE.format(lead=LEAD)


@dataclass(frozen=True)
class LinkProbe:
    """What one probe found: raw bytes per second to the far side, and its zstd."""

    link_bps: float
    zstd: str | None
    at: float


class _Marks:
    """Reads the probe's stdout in a thread, noting when each line arrived."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.lines: list[tuple[str, float]] = []
        self._cond = threading.Condition()
        self._chan = chan
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        buf = b""
        try:
            while data := self._chan.recv(4096):
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    with self._cond:
                        self.lines.append((line.decode(errors="replace"), time.monotonic()))
                        self._cond.notify_all()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        with self._cond:
            self.lines.append(("", time.monotonic()))  # EOF
            self._cond.notify_all()

    def wait(self, count: int, deadline: float) -> list[tuple[str, float]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.lines) >= count, remaining(deadline))
            return list(self.lines)


def probe_link(
    transport: paramiko.Transport,
    text: str,
    *,
    where: str,
    max_bytes: int = 256 << 20,
    max_send_s: float = 0.05,
    timeout: float = 30.0,
) -> LinkProbe:
    """Run the probe ``text`` (``probe_script`` rendered with the env) and time it.

    Sends for ``max_send_s`` after the first mark (at most ``max_bytes``): enough
    for a steady rate on a fast link, and on a slow one the probe then lasts that
    long plus the time to drain what our send buffers took in (~1 s at 100 Mbit/s).

    Raises:
        HostUnreachableError: the channel failed or ``timeout`` passed.
        TransferError: the far side's answer made no sense.
    """
    deadline = time.monotonic() + timeout
    chan = open_command(transport, text, timeout, where, eof=False)
    try:
        marks = _Marks(chan)
        first = marks.wait(1, deadline)
        if not first or not first[0][0].startswith("z="):
            raise TransferError(f"{where}: link probe answered {first[:1]!r}")
        zstd = first[0][0][2:] or None
        piece = os.urandom(SEND_PIECE * 8)
        sent = 0
        started: float | None = None
        while sent < max(max_bytes, LEAD + len(piece)):
            send_all(chan, piece)
            sent += len(piece)
            if started is None and len(marks.lines) >= 2:
                started = time.monotonic()
            if started is not None and time.monotonic() - started > max_send_s:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("probe deadline")
        chan.shutdown_write()
        lines = marks.wait(3, deadline)
        if [name for name, _ in lines[1:3]] != ["a", "b"]:
            raise TransferError(f"{where}: link probe answered {[n for n, _ in lines]!r}")
        span = max(lines[2][1] - lines[1][1], 1e-4)
        return LinkProbe(link_bps=(sent - LEAD) / span, zstd=zstd, at=time.monotonic())
    except (TimeoutError, OSError, EOFError, paramiko.SSHException) as err:
        raise HostUnreachableError(f"{where}: link probe failed: {err}") from err
    finally:
        chan.close()
