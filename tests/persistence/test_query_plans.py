"""The engine's tick lists live cases among many finished ones: that must use the index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from mqi_communicator.migrations import api
from mqi_communicator.persistence import make_engine
from mqi_communicator.persistence.store_reads import list_cases
from mqi_communicator.statemachine import CaseState


def test_live_case_listing_searches_the_status_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    api.upgrade(url)
    engine = make_engine(url)
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    try:
        with Session(engine) as s:
            list_cases(s, [CaseState.SUBMITTED, CaseState.RUNNING])
        assert len(seen) == 1
        statement, params = seen[0]
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).fetchall()
        plan = " | ".join(str(r[-1]) for r in rows)
        assert "USING INDEX ix_cases_status" in plan, plan
    finally:
        engine.dispose()
