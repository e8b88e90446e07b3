"""Store.open refuses a schema that is not exactly at this code's head."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from mqi_communicator.errors import SchemaMismatchError
from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store, make_engine


def _sql(url: str, statement: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()


def test_empty_database_is_refused(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        sqlite3.connect(db_url.removeprefix("sqlite:///")).close()  # an empty file
    with pytest.raises(SchemaMismatchError, match=r"empty database.*mqi-communicator db upgrade"):
        Store.open(db_url)


def test_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    # An empty file left behind by a reader would be refused by the engine later.
    db = tmp_path / "mqi.db"
    with pytest.raises(SchemaMismatchError, match=r"no database at .*mqi-communicator run"):
        Store.open(f"sqlite:///{db.as_posix()}")
    assert not db.exists()


def test_behind_is_refused(db_url: str) -> None:
    api.upgrade(db_url)
    api.downgrade(db_url, "base")  # alembic_version exists but records nothing
    with pytest.raises(SchemaMismatchError, match=r"mqi-communicator db upgrade --db"):
        Store.open(db_url)
    api.upgrade(db_url)
    Store.open(db_url).close()


def test_one_revision_behind_names_both(db_url: str) -> None:
    older = api.history()[-2].revision
    api.upgrade(db_url, older)
    with pytest.raises(SchemaMismatchError, match=rf"at schema revision {older}, behind "):
        Store.open(db_url)


def test_ahead_is_refused(db_url: str) -> None:
    api.upgrade(db_url)
    _sql(db_url, "UPDATE alembic_version SET version_num = 'ffff9999'")
    with pytest.raises(SchemaMismatchError, match=r"'ffff9999'.*ahead of the code"):
        Store.open(db_url)


def test_message_hides_the_password() -> None:
    url = "postgresql://user:s3cret@127.0.0.1:1/x"
    from mqi_communicator.persistence.engine_setup import display_url

    assert "s3cret" not in display_url(url) and "psycopg" in display_url(url)


def test_legacy_file_is_refused_before_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE cases(case_id INTEGER PRIMARY KEY AUTOINCREMENT, case_path TEXT)")
    con.commit()
    con.close()
    with pytest.raises(SchemaMismatchError, match=r"legacy.*run `mqi-communicator db upgrade"):
        Store.open(f"sqlite:///{path}")
