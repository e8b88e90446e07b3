"""One engine per SQLite database: an OS file lock next to the database file.

Why an OS lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) rather than a pid
file: the kernel drops it when the holder dies, even by ``kill -9`` or a power cut on
the holder's side, so a crashed engine never leaves a stale lock to be guessed at. The
file also holds the holder's pid, host and start time, which the refusal names.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from .errors import MqiError
from .persistence import normalize_url

__all__ = ["EngineLock", "EngineLockedError", "sqlite_file", "sqlite_lock_path"]

# Windows locks byte ranges; lock one far past the text so the holder info stays readable.
_LOCK_OFFSET = 0x7FFF_FFF0


class EngineLockedError(MqiError):
    """Another engine already runs on this database."""


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a file-backed SQLite URL; None otherwise (PostgreSQL, memory)."""
    url = make_url(normalize_url(database_url))
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def sqlite_lock_path(database_url: str) -> Path | None:
    """``<db file>.lock`` for a file-backed SQLite URL; None otherwise."""
    db = sqlite_file(database_url)
    return None if db is None else db.with_name(db.name + ".lock")


class EngineLock:
    """An exclusive, non-blocking lock on ``path`` held until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`EngineLockedError` naming the holder."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+b")
        try:
            _lock(f)
        except OSError as err:
            f.close()
            raise EngineLockedError(
                f"another engine is already running on this database ({self._holder()}); "
                f"lock file {self.path}. Stop it first: only one engine may run per SQLite "
                "database (use PostgreSQL to run several)."
            ) from err
        f.seek(0)
        f.truncate()
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        f.write(json.dumps(info).encode())
        f.flush()
        self._file = f

    def release(self) -> None:
        """Release the lock. Safe to call twice."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.seek(0)
            f.truncate()
            f.flush()
            _unlock(f)
        finally:
            f.close()

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return "holder unknown"
        if not info:
            return "holder unknown"
        return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"


if sys.platform == "win32":
    import msvcrt

    def _lock(f: IO[bytes]) -> None:
        f.seek(_LOCK_OFFSET)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(f: IO[bytes]) -> None:
        f.seek(_LOCK_OFFSET)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(f: IO[bytes]) -> None:
        # flock, not lockf: flock conflicts between two opens in the same process too.
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(f: IO[bytes]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
