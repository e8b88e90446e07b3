"""The job's output log on the far side: where it is, and reading its tail or new bytes.

:func:`job_log_path` is the ONE place that knows where the wrapper writes ``job.log``
for an attempt's directory; everything else (``cases log``, the web page) goes through
it, so moving the marker directory means changing this function only.

Reading is one shell command over the host's transport: the file's size and a slice of
it, base64-encoded so any bytes (a binary dump, broken UTF-8) arrive intact. Whatever
the log holds is data: it is decoded leniently and never interpreted.
"""

from __future__ import annotations

import base64
import binascii
import shlex
from dataclasses import dataclass

from mqi_communicator.errors import RemoteCommandError
from mqi_communicator.remote.job.marker_probe import marker_dir
from mqi_communicator.remote.protocol import Transport

__all__ = [
    "DEFAULT_MAX_BYTES",
    "LogChunk",
    "job_log_path",
    "parse_read",
    "read_job_log",
    "read_script",
]

#: A single read returns at most this much (a follow loop reads the rest next time).
DEFAULT_MAX_BYTES = 256 * 1024
_TAG = "@mqi-log"


def job_log_path(remote_dir: str, *, legacy: bool = False) -> str:
    """The wrapper's ``job.log`` of the attempt whose directory is ``remote_dir``.

    ``legacy``: an attempt claimed before attempt tokens existed, whose markers (and log)
    are inside the case directory.
    """
    return f"{marker_dir(remote_dir, legacy=legacy)}/job.log"


@dataclass(frozen=True)
class LogChunk:
    """A slice of a job log.

    Attributes:
        exists: False when there is no log (yet): the job has not started, or the
            directory is gone.
        size: The file's size when it was read.
        start: The offset of ``data`` in the file.
        data: The bytes read.
    """

    exists: bool
    size: int = 0
    start: int = 0
    data: bytes = b""

    @property
    def end(self) -> int:
        """The offset just after ``data``: where the next read of new bytes starts."""
        return self.start + len(self.data)

    @property
    def text(self) -> str:
        """``data`` decoded as UTF-8, undecodable bytes replaced."""
        return self.data.decode("utf-8", "replace")


def read_script(path: str, *, offset: int | None, lines: int | None, max_bytes: int) -> str:
    """Shell text printing the size and a slice of ``path``, base64-encoded.

    ``offset``: bytes from there on (from 0 when the file shrank below it: rotated or
    truncated); else the last ``lines`` lines. At most ``max_bytes`` either way. The
    slice is cut at the size measured first, so bytes written meanwhile are read next
    time, never twice.
    """
    f = shlex.quote(path)
    head = (
        f'f={f}; [ -f "$f" ] || {{ echo "{_TAG} missing"; exit 0; }}; '
        "n=$(wc -c <\"$f\" | tr -d ' '); "
        f'echo "{_TAG} size $n"; '
    )
    if offset is not None:
        return head + (
            f's={int(offset)}; [ "$s" -le "$n" ] || s=0; echo "{_TAG} start $s"; '
            f'echo "{_TAG} data"; '
            f'head -c "$n" "$f" | tail -c +$((s + 1)) | head -c {int(max_bytes)} | base64'
        )
    count = max(0, int(lines or 0))
    return head + (
        f'echo "{_TAG} data"; head -c "$n" "$f" | tail -n {count} | tail -c {int(max_bytes)} '
        "| base64"
    )


def parse_read(stdout: str, *, tail: bool) -> LogChunk:
    """Parse what :func:`read_script` printed (``tail``: the lines mode, no start line).

    Raises:
        RemoteCommandError: the output is not what the script prints.
    """
    size: int | None = None
    start: int | None = None
    body: list[str] = []
    in_data = False
    for line in stdout.splitlines():
        if in_data:
            body.append(line.strip())
            continue
        words = line.split()
        if words[:2] == [_TAG, "missing"]:
            return LogChunk(exists=False)
        if words[:2] == [_TAG, "size"] and len(words) == 3 and words[2].isdigit():
            size = int(words[2])
        elif words[:2] == [_TAG, "start"] and len(words) == 3 and words[2].isdigit():
            start = int(words[2])
        elif words == [_TAG, "data"]:
            in_data = True
    if size is None or not in_data or (not tail and start is None):
        raise RemoteCommandError(f"unexpected answer while reading the job log: {stdout[:200]!r}")
    try:
        data = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError) as err:
        raise RemoteCommandError(f"job log arrived garbled: {err}") from err
    first = size - len(data) if start is None else start
    return LogChunk(exists=True, size=size, start=max(0, first), data=data)


def read_job_log(
    transport: Transport,
    remote_dir: str,
    *,
    offset: int | None = None,
    lines: int = 100,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 60.0,
    legacy: bool = False,
) -> LogChunk:
    """Read the job log of ``remote_dir``: new bytes from ``offset``, else the last ``lines``.

    Raises:
        HostUnreachableError: the host could not be asked.
        RemoteCommandError: the read failed on the far side.
    """
    path = job_log_path(remote_dir, legacy=legacy)
    script = read_script(path, offset=offset, lines=lines, max_bytes=max_bytes)
    result = transport.run(script, timeout=timeout)
    if result.exit_code != 0:
        raise RemoteCommandError(
            f"reading the job log on {transport.host_name} failed (exit {result.exit_code}): "
            f"{result.stderr.strip()[:200]}"
        )
    return parse_read(result.stdout, tail=offset is None)
