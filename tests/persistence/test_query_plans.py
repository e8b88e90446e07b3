"""The engine's tick lists live cases among many finished ones: that must use the index."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from mqi_communicator.migrations import api
from mqi_communicator.persistence import Case, make_engine


def test_live_case_listing_searches_the_status_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    api.upgrade(url)
    engine = make_engine(url)
    try:
        # The same statement store_reads.list_cases builds for a status filter.
        q = select(Case).where(Case.status.in_(["submitted", "running"])).order_by(Case.id)
        sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX ix_cases_status" in plan, plan
    finally:
        engine.dispose()
