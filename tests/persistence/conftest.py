"""Store fixtures on both backends (SQLite file and a fresh PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mqi_communicator.migrations import api
from mqi_communicator.persistence import CaseRecord, GpuRecord, Store

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A fixed test clock: T0 + seconds."""
    return T0 + timedelta(seconds=seconds)


def label_plan(case: CaseRecord, gpu: GpuRecord) -> tuple[str, str]:
    """The claim plan the tests use: a label unique per case and attempt."""
    return f"mqi-{case.id}-a{case.attempt}", f"/remote/cases/{case.id}/{case.attempt}"


@pytest.fixture
def store_url(db_url: str) -> str:
    """A database at head."""
    api.upgrade(db_url)
    return db_url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store on a database at head (both backends)."""
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()
