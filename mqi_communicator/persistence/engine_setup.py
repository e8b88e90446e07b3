"""Engines for a database URL: SQLite pragmas and write locking, PostgreSQL via psycopg."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..errors import ConfigError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "ERROR_DATABASE_ATTR",
    "SUPPORTED_BACKENDS",
    "WRITE_OPTION",
    "display_url",
    "make_engine",
    "normalize_url",
    "sqlite_file",
    "write_engine",
]

#: How long a SQLite writer waits for another writer's lock before giving up.
BUSY_TIMEOUT_MS = 30_000

#: Execution option that makes a SQLite transaction start with ``BEGIN IMMEDIATE``.
WRITE_OPTION = "mqi_sqlite_write"

#: The database backends the schema and the engine are written and tested for.
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def normalize_url(url: str) -> str:
    """Turn what a user typed into a SQLAlchemy URL string.

    ``postgresql://`` and ``postgres://`` select psycopg 3; a bare path such as
    ``x.db`` means a SQLite file.

    Raises:
        ConfigError: empty, not a URL, or a backend other than SQLite and PostgreSQL.
    """
    text = url.strip()
    if not text:
        raise ConfigError("empty database URL")
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve().as_posix()}"
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+psycopg://" + text[len(prefix) :]
    try:
        parsed = make_url(text)
    except ArgumentError as err:
        raise ConfigError(f"not a database URL: {text!r}: {err}") from err
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigError(
            f"unsupported database backend {backend!r} in {shown!r}: use "
            "sqlite:///path/to/mqi.db or postgresql://user@host/dbname"
        )
    return text


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a file-backed SQLite URL; None otherwise (PostgreSQL, memory)."""
    url = make_url(normalize_url(database_url))
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def display_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except Exception:  # only used in messages; never fail on it
        return "<database>"


def _sqlite_setup(engine: Engine, *, foreign_keys: bool) -> None:
    # pysqlite's own transaction handling issues BEGIN lazily and only before DML, which
    # breaks SERIALIZABLE reads. Take over: SQLAlchemy's "pysqlite serializable" recipe.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _check_is_database(cur, engine.url)
            cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            # WAL lets readers run while one writer writes; a no-op on :memory:.
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two writers never both read the
        # same row and then race to update it (no lost update, no upgrade deadlock).
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _check_is_database(cur: Any, url: URL) -> None:
    """Raise :class:`ConfigError` naming the file when it is not an SQLite database."""
    try:
        cur.execute("SELECT count(*) FROM sqlite_master")  # reads the header and schema
    except sqlite3.DatabaseError as err:
        if isinstance(err, sqlite3.OperationalError):  # locked, unreadable: not our call
            raise
        raise ConfigError(
            f"{url.database}: not an SQLite database ({err}); point --db / database_url "
            "at an mqi-communicator database, or a new file name to create one"
        ) from err


def make_engine(url: str | URL, *, foreign_keys: bool = True, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with this project's connection settings.

    Args:
        url: A database URL (see :func:`normalize_url`).
        foreign_keys: SQLite only; migrations turn enforcement off while they
            recreate tables.
        **kwargs: Passed to :func:`sqlalchemy.create_engine`.
    """
    real = make_url(normalize_url(url)) if isinstance(url, str) else url
    try:
        engine = create_engine(real, **kwargs)
    except (NoSuchModuleError, ArgumentError) as err:
        shown = real.render_as_string(hide_password=True)
        raise ConfigError(f"unsupported database URL {shown!r}: {err}") from err
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine, foreign_keys=foreign_keys)
    _name_database_in_errors(engine)
    return engine


#: Attribute set on SQLAlchemy errors: the database they concern, password hidden.
ERROR_DATABASE_ATTR = "mqi_database"


def _name_database_in_errors(engine: Engine) -> None:
    # A driver's "unable to open database file" does not say which file; the CLI's
    # message should (cli.output.describe_failure reads the attribute).
    shown = engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine, "handle_error")
    def _on_error(ctx: ExceptionContext) -> None:
        if ctx.sqlalchemy_exception is not None:
            setattr(ctx.sqlalchemy_exception, ERROR_DATABASE_ATTR, shown)


def write_engine(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) whose transactions take the write lock at BEGIN."""
    return engine.execution_options(**{WRITE_OPTION: True})
