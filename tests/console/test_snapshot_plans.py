"""A snapshot's queries use their indexes, even after ANALYZE taught SQLite the data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from mqi_communicator.console import take_snapshot
from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store

from .conftest import populate


def test_snapshot_queries_search_indexes(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'plan.db').as_posix()}"
    api.upgrade(url)
    with Store.open(url) as store:
        populate(store, fillers=5)
        now = datetime.now(UTC)
        # Many ended cases, few live ones: the shape where a plan that walks the table loses.
        engine = store._engine
        with engine.begin() as conn:
            at = now.replace(tzinfo=None)
            conn.exec_driver_sql(
                "INSERT INTO cases (path, status, progress, attempt, cancel_requested, "
                "transient_failures, created_at, status_updated_at, version) "
                "VALUES (?, 'completed', 100, 1, 0, 0, ?, ?, 1)",
                [(f"/old/{i}", at, at) for i in range(3000)],
            )
            conn.exec_driver_sql("ANALYZE")
        seen: list[tuple[str, Any]] = []

        def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                seen.append((statement, params))

        event.listen(engine, "before_cursor_execute", capture)
        snap = take_snapshot(store, ["local"], now)
        event.remove(engine, "before_cursor_execute", capture)
        assert len(snap.cases) == 6 + 20  # live ones, then the 20 newest ended
        with engine.connect() as conn:
            for statement, params in seen:
                plan = " | ".join(
                    str(r[-1])
                    for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                )
                # Live cases by the status index; the newest ended walk the primary key
                # backwards (ORDER BY id DESC) and stop at their limit.
                if "WHERE cases.status" in statement and "DESC" not in statement:
                    assert "USING INDEX ix_cases_status" in plan, (statement, plan)
                if "FROM case_transitions" in statement:
                    assert "ix_case_transitions_case_id_id" in plan, plan
