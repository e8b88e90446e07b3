"""Revision 0005 on SQLite and PostgreSQL: rows from before it, one LIVE case per path.

Rows written at 0004 (one case per path, ever) keep everything; cases that had ended
are marked settled for remote retention (their remote folders are left alone); a path
whose case ended may then get a new case, but never a second live one; and a downgrade
refuses while a path has several cases.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from mqi_communicator.errors import ConflictError
from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store, make_engine
from mqi_communicator.statemachine import CaseState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _insert_at_0004(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for cid, path, status, remote in (
                (1, "/w/done", "completed", "/r/mqic_case_1_a1"),
                (2, "/w/live", "running", "/r/mqic_case_2_a1"),
                (3, "/w/failed", "failed", None),
            ):
                conn.execute(
                    text(
                        "INSERT INTO cases (id, path, status, progress, attempt, remote_dir, "
                        "cancel_requested, transient_failures, created_at, status_updated_at, "
                        "version) VALUES (:id, :path, :status, 0, 1, :remote, false, 0, "
                        ":now, :now, 1)"
                    ),
                    {"id": cid, "path": path, "status": status, "remote": remote, "now": NOW},
                )
            if conn.dialect.name == "postgresql":  # explicit ids: move the sequence past them
                conn.execute(text("SELECT setval(pg_get_serial_sequence('cases', 'id'), 3)"))
    finally:
        engine.dispose()


def test_legacy_rows_migrate_and_a_path_may_run_again(db_url: str) -> None:
    api.upgrade(db_url, "0004")
    _insert_at_0004(db_url)
    api.upgrade(db_url)
    with Store.open(db_url) as store:
        done = store.get_case(1)
        assert done.fingerprint is None and done.status is CaseState.COMPLETED
        assert done.remote_done == "/r/mqic_case_1_a1"  # ended before 0005: left alone
        assert store.get_case(2).remote_done is None  # live: settled when it ends
        # The ended case's folder may become a new case ...
        again, created = store.register_case("/w/done", NOW, fingerprint="f2", after=1)
        assert created and again.id != 1 and again.fingerprint == "f2"
        assert store.find_case("/w/done") == again
        # ... but the live one's may not, whatever the caller believes.
        same, created = store.register_case("/w/live", NOW, fingerprint="f", after=2)
        assert not created and same.id == 2
        # Nor a second live case next to the new one (the partial unique index).
        with pytest.raises(ConflictError):
            store.write(
                # The old case made live again behind the store's back.
                lambda s: s.execute(text("UPDATE cases SET status = 'submitted' WHERE id = 1"))
            )
    api.downgrade(db_url, "0005")  # the later revisions go; 0005's own refusal is tested
    with pytest.raises(RuntimeError, match="several cases"):
        api.downgrade(db_url, "0004")
    assert api.current(db_url) == "0005"


def test_downgrade_restores_one_case_per_path(db_url: str) -> None:
    api.upgrade(db_url, "0004")
    _insert_at_0004(db_url)
    api.upgrade(db_url)
    api.downgrade(db_url, "0004")
    engine = make_engine(db_url)
    try:
        with pytest.raises(Exception, match=r"(?i)unique"), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO cases (path, status, progress, attempt, cancel_requested, "
                    "transient_failures, created_at, status_updated_at, version) VALUES "
                    "('/w/done', 'submitted', 0, 1, false, 0, :now, :now, 1)"
                ),
                {"now": NOW},
            )
    finally:
        engine.dispose()
    api.upgrade(db_url)
    with Store.open(db_url) as store:
        assert [c.id for c in store.list_cases()] == [1, 2, 3]
