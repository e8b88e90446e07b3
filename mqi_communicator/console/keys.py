"""Single key presses without blocking, on POSIX terminals and the Windows console.

POSIX: the terminal goes to cbreak mode (keys arrive at once, unechoed; Ctrl-C still
interrupts) while the reader is open, and is restored on exit whatever happens.
Windows: ``msvcrt`` polls the console's key buffer.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["KeyReader"]

#: How often the Windows console is polled while waiting.
_WIN_SLICE_S = 0.05
#: Escape sequences of the keys the console uses, mapped to short names.
_SEQUENCES = {
    "\x1b[A": "up",
    "\x1b[B": "down",
    "\x1b[5~": "pgup",
    "\x1b[6~": "pgdn",
    "\x1b[H": "home",
    "\x1b[F": "end",
}


class KeyReader:
    """Read keys from the controlling terminal; does nothing when stdin is not one."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._saved: Any = None
        self._pending = ""  # keys read together (a fast typist, a paste) wait their turn

    def __enter__(self) -> KeyReader:
        if sys.platform != "win32" and sys.stdin.isatty():
            import termios
            import tty

            self._fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if sys.platform != "win32" and self._fd is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._fd = None

    def read(self, timeout: float) -> str | None:
        """The next key (``q``, ``up``, ``pgdn``...), or None after ``timeout`` seconds."""
        if sys.platform == "win32":
            return _read_windows(timeout)
        if self._pending:
            return self._take()
        if self._fd is None:
            time.sleep(timeout)  # no terminal to read: just pace the caller
            return None
        import select

        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return None
        self._pending = os.read(self._fd, 64).decode("utf-8", "replace")
        return self._take()

    def _take(self) -> str:
        for seq, name in _SEQUENCES.items():
            if self._pending.startswith(seq):
                self._pending = self._pending[len(seq) :]
                return name
        key, self._pending = self._pending[0], self._pending[1:]
        return key


def _read_windows(timeout: float) -> str | None:
    if sys.platform == "win32":  # keeps mypy and other platforms off msvcrt
        import msvcrt

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if msvcrt.kbhit():
                ch = msvcrt.getwch()
                if ch in ("\x00", "\xe0"):  # a special key: its code follows
                    code = msvcrt.getwch()
                    return {"H": "up", "P": "down", "I": "pgup", "Q": "pgdn"}.get(code)
                return ch
            time.sleep(_WIN_SLICE_S)
        return None
    raise AssertionError("only called on Windows")
