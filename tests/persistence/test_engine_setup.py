"""Connection settings: SQLite pragmas, BEGIN IMMEDIATE for writers, URL handling."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from mqi_communicator.errors import ConfigError
from mqi_communicator.persistence import make_engine, normalize_url
from mqi_communicator.persistence.engine_setup import BUSY_TIMEOUT_MS, write_engine


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


def test_writers_take_the_lock_at_begin_readers_do_not(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    engine = make_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with engine.connect() as reader, reader.begin():
            reader.execute(text("SELECT 1"))
            other.execute("BEGIN IMMEDIATE")  # a plain BEGIN holds no write lock
            other.execute("ROLLBACK")
        with write_engine(engine).connect() as writer, writer.begin():
            writer.execute(text("SELECT 1"))  # no write yet, but the lock is held
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        engine.dispose()


def test_url_normalisation(tmp_path: Path) -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    bare = normalize_url(str(tmp_path / "y.db"))
    assert bare == f"sqlite:///{(tmp_path / 'y.db').as_posix()}"
    with pytest.raises(ConfigError):
        normalize_url("  ")
    with pytest.raises(ConfigError, match="unsupported"):
        make_engine("nonsense://x")


def test_naive_datetimes_are_refused(tmp_path: Path) -> None:
    from datetime import datetime

    from mqi_communicator.migrations import api
    from mqi_communicator.persistence import Store

    url = f"sqlite:///{tmp_path / 'n.db'}"
    api.upgrade(url)
    with Store.open(url) as store, pytest.raises(Exception, match="naive"):
        store.register_case("/c", datetime(2026, 1, 1))  # naive on purpose
