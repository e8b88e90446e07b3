"""Who may use a database: one engine per SQLite file; no schema change under an engine.

SQLite: an OS file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on
``<real database path>.lock``. Why an OS lock rather than a pid file: the kernel drops it
when the holder dies, even by ``kill -9`` or a power cut on the holder's side, so a
crashed engine never leaves a stale lock to be guessed at. The file also holds the
holder's pid, host and start time, which the refusal names.

The lock is named after the database's REAL path (symlinks, ``..`` and relative paths
resolved), so two engines reaching one file by different names meet on one lock. Hard
links cannot be resolved to one name, so a database file with more than one link is
refused outright (SQLite's own ``-wal`` file also goes by name: two names corrupt it).

PostgreSQL: several engines may share a database. Each holds a SHARED session advisory
lock on a connection of its own for as long as it runs; ``db downgrade`` takes the same
lock EXCLUSIVELY, so it is refused while any engine runs and an engine is refused while
a downgrade runs. Limit: the lock lives with that connection; if the server drops it,
the engine runs on unlocked until it is restarted.

``db downgrade`` on SQLite takes the engine's file lock itself.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from .errors import MqiError

# sqlite_file lives beside normalize_url (persistence reads it too); re-exported here.
from .persistence.engine_setup import make_engine, normalize_url, sqlite_file

__all__ = [
    "DatabaseLock",
    "EngineLock",
    "EngineLockedError",
    "PostgresLock",
    "engine_lock",
    "schema_change_lock",
    "sqlite_file",
    "sqlite_lock_path",
]

# Windows locks byte ranges; lock one far past the text so the holder info stays readable.
_LOCK_OFFSET = 0x7FFF_FFF0
#: The PostgreSQL advisory lock key ("mqi_sch" in ASCII); advisory keys are per database.
_PG_KEY = 0x6D71_695F_7363_68


class EngineLockedError(MqiError):
    """Another engine (or a schema change) already holds this database."""


class DatabaseLock(Protocol):
    """A lock on a database taken by :meth:`acquire` and given back by :meth:`release`."""

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        ...

    def acquire(self) -> None:
        """Take the lock or raise :class:`EngineLockedError` saying who holds it."""
        ...

    def release(self) -> None:
        """Give the lock back. Safe to call twice."""
        ...


def sqlite_lock_path(database_url: str) -> Path | None:
    """``<real db file>.lock`` for a file-backed SQLite URL; None otherwise.

    The path is resolved (symlinks, ``..``, relative to the current directory), so every
    name of one database file gives the same lock file.
    """
    db = sqlite_file(database_url)
    if db is None:
        return None
    real = db.resolve()
    return real.with_name(real.name + ".lock")


_ENGINE_REFUSAL = (
    "another engine is already running on this database ({holder}); lock file {path}. "
    "Stop it first: only one engine may run per SQLite database (use PostgreSQL to run "
    "several)."
)
_SCHEMA_REFUSAL = (
    "refusing to change the schema while an engine runs on this database ({holder}); "
    "lock file {path}. Stop the engine first."
)


def engine_lock(database_url: str) -> DatabaseLock | None:
    """The lock an engine holds while it runs on ``database_url`` (None: in-memory)."""
    pg = _postgres(database_url)
    if pg:
        return PostgresLock(database_url, shared=True)
    path = sqlite_lock_path(database_url)
    db = sqlite_file(database_url)
    return None if path is None else EngineLock(path, database=db, refusal=_ENGINE_REFUSAL)


def schema_change_lock(database_url: str) -> DatabaseLock | None:
    """The lock ``db downgrade`` holds: refused while any engine runs on the database."""
    if _postgres(database_url):
        return PostgresLock(database_url, shared=False)
    path = sqlite_lock_path(database_url)
    db = sqlite_file(database_url)
    return None if path is None else EngineLock(path, database=db, refusal=_SCHEMA_REFUSAL)


def _postgres(database_url: str) -> bool:
    return make_url(normalize_url(database_url)).get_backend_name() == "postgresql"


class EngineLock:
    """An exclusive, non-blocking OS lock on ``path`` held until :meth:`release`.

    Args:
        path: The lock file (created if missing).
        database: The SQLite file it guards; refused when it has more than one hard link.
        refusal: The message when the lock is taken, with ``{holder}`` and ``{path}``.
    """

    def __init__(
        self, path: Path, *, database: Path | None = None, refusal: str = _ENGINE_REFUSAL
    ) -> None:
        self.path = path
        self.database = database
        self._refusal = refusal
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`EngineLockedError` naming the holder."""
        if self._file is not None:
            return
        self._refuse_hard_links()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+b")
        try:
            _lock(f)
        except OSError as err:
            f.close()
            raise EngineLockedError(
                self._refusal.format(holder=self._holder(), path=self.path)
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

    def _refuse_hard_links(self) -> None:
        if self.database is None:
            return
        try:
            links = self.database.stat().st_nlink
        except FileNotFoundError:
            return  # created by the engine under this very name
        if links > 1:
            raise EngineLockedError(
                f"{self.database} has {links} hard links: the engine lock and SQLite's "
                "own journal go by file name, so two names could let two engines in and "
                "corrupt it. Keep one name (remove the other links; a symlink is fine)."
            )

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


class PostgresLock:
    """A session advisory lock, shared (engines) or exclusive (``db downgrade``).

    Held on a dedicated autocommit connection, so it is never "idle in transaction".
    """

    def __init__(self, database_url: str, *, shared: bool) -> None:
        self.url = database_url
        self.shared = shared
        self._engine: Any = None
        self._conn: Any = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._conn is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`EngineLockedError` naming the holders' pids."""
        if self._conn is not None:
            return
        engine = make_engine(self.url, poolclass=NullPool)
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        fn = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
        try:
            got = conn.execute(text(f"SELECT {fn}(:k)"), {"k": _PG_KEY}).scalar()
            others = "" if got else self._holders(conn)
        except BaseException:
            conn.close()
            engine.dispose()
            raise
        if not got:
            conn.close()
            engine.dispose()
            if self.shared:
                raise EngineLockedError(
                    f"a schema change (db downgrade) is running on this database ({others}); "
                    "start the engine once it has finished"
                )
            raise EngineLockedError(
                f"refusing to change the schema while an engine runs on this database "
                f"({others}). Stop every engine first."
            )
        self._engine, self._conn = engine, conn

    @staticmethod
    def _holders(conn: Any) -> str:
        rows = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :hi AND objid = :lo AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY pid"
            ),
            {"hi": _PG_KEY >> 32, "lo": _PG_KEY & 0xFFFF_FFFF},
        ).all()
        pids = ", ".join(str(r[0]) for r in rows)
        return f"held by server process(es) {pids}" if pids else "holder unknown"

    def release(self) -> None:
        """Close the connection, which drops the lock. Safe to call twice."""
        conn, engine, self._conn, self._engine = self._conn, self._engine, None, None
        if conn is not None:
            conn.close()
        if engine is not None:
            engine.dispose()


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
