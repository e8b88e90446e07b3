"""A legacy database with one case_path on two rows is refused whole, and left as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mqi_communicator.migrations.legacy_checks import duplicate_paths
from mqi_communicator.persistence import Store
from tests.migrations.cli_run import run_cli

# The original system's tables, as a copy made without the UNIQUE constraint on case_path.
DDL = """
CREATE TABLE cases (
    case_id INTEGER PRIMARY KEY AUTOINCREMENT, case_path TEXT, status TEXT, progress INTEGER,
    pueue_group TEXT, pueue_task_id INTEGER, submitted_at, completed_at, status_updated_at
);
CREATE TABLE gpu_resources (pueue_group TEXT PRIMARY KEY, status TEXT, assigned_case_id INTEGER);
"""
ROWS = [
    (4, "/data/QA/patient 01", "completed", 100),
    (9, "/data/QA/patient 01", "failed", 10),
    (11, "/data/QA/patient 02", "pending", 0),
    (12, "/data/QA/patient 03", "completed", 100),
    (17, "/data/QA/patient 03", "pending", 0),
    (18, "/data/QA/patient 03", "error", 0),
]


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def test_duplicated_paths_are_refused_and_nothing_changes(tmp_path: Path) -> None:
    db = tmp_path / "legacy.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(DDL)
        conn.executemany(
            "INSERT INTO cases (case_id, case_path, status, progress) VALUES (?, ?, ?, ?)", ROWS
        )
        conn.execute("INSERT INTO gpu_resources VALUES ('gpu0', 'available', NULL)")
    before = _dump(db)

    result = run_cli("db", "upgrade", "--db", f"sqlite:///{db}")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "IntegrityError" not in result.stderr
    line = result.stderr.strip()
    assert "\n" not in line
    assert "'/data/QA/patient 01' on cases 4, 9" in line
    assert "'/data/QA/patient 03' on cases 12, 17, 18" in line
    assert "Nothing was changed" in line and "db upgrade" in line
    assert _dump(db) == before  # same tables, same rows, no alembic_version

    # The operator keeps one row per folder; then every row is adopted.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE cases SET case_path = case_path || ' (old ' || case_id || ')' "
            "WHERE case_id IN (4, 12, 17)"
        )
    again = run_cli("db", "upgrade", "--db", f"sqlite:///{db}")
    assert again.returncode == 0, again.stderr
    with Store.open(f"sqlite:///{db}") as store:
        assert sorted(c.id for c in store.list_cases()) == [r[0] for r in ROWS]


def test_duplicate_paths_compare_as_adopted() -> None:
    rows: list[tuple[int, object]] = [(1, "/a"), (2, "/b"), (3, None), (4, None), (5, "/a")]
    assert duplicate_paths(rows) == {"/a": [1, 5], "None": [3, 4]}
    assert duplicate_paths([(1, "/a"), (2, "/A")]) == {}  # as the unique column compares
