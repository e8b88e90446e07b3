"""The two ways to hand an event to a hook: a local command, or an HTTP POST.

Each returns None on success or a one-line error. Neither can hang past its timeout:
a command is killed with its whole process group, an HTTP call times out on every socket
operation. Output is never buffered without bound (a chatty hook cannot eat memory).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

__all__ = ["send_command", "send_http"]

#: How much of a failing hook's stderr / response body goes into the error text.
_ERROR_TAIL = 300
#: How often a running command hook is checked for its deadline and for cancellation.
_SLICE_S = 0.1


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    if sys.platform == "win32":
        proc.kill()
    else:
        # The hook ran in its own session: kill what it started too, not only the shell.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def send_command(
    argv: Sequence[str],
    body: bytes,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
) -> str | None:
    """Run ``argv`` with ``body`` on stdin; None if it exited 0 within ``timeout_s``.

    Setting ``cancel`` kills the hook at once (the engine is stopping).
    """
    full_env = {**os.environ, **(env or {})}
    deadline = time.monotonic() + timeout_s
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=full_env,
                start_new_session=sys.platform != "win32",
            )
        except OSError as exc:
            return f"cannot start {argv[0]!r}: {exc}"
        feed: bytes | None = body
        while True:
            try:
                proc.communicate(feed, timeout=_SLICE_S)
                break
            except subprocess.TimeoutExpired:
                feed = None  # communicate() remembers the input it started with
                if cancel is not None and cancel.is_set():
                    _kill_tree(proc)
                    return "cancelled: the engine is stopping (killed)"
                if time.monotonic() >= deadline:
                    _kill_tree(proc)
                    return f"timed out after {timeout_s:g} s (killed)"
        if proc.returncode == 0:
            return None
        err.seek(0, os.SEEK_END)
        err.seek(max(0, err.tell() - _ERROR_TAIL))
        tail = err.read().decode("utf-8", "replace").strip().replace("\n", " | ")
        return f"exit {proc.returncode}" + (f": {tail}" if tail else "")


def send_http(
    url: str, body: bytes, timeout_s: float, headers: Mapping[str, str] | None = None
) -> str | None:
    """POST ``body`` as JSON to ``url``; None on a 2xx answer within ``timeout_s``."""
    request = urllib.request.Request(  # noqa: S310 -- the config allows http(s) URLs only
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "mqi-communicator",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310
            resp.read(_ERROR_TAIL)
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        text = exc.read(_ERROR_TAIL).decode("utf-8", "replace").strip()
        return f"HTTP {exc.code}" + (f": {text}" if text else "")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"POST failed: {reason}"
    if not 200 <= status < 300:
        return f"HTTP {status}"
    return None
