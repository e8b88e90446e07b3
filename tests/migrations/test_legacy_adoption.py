"""`db upgrade` adopts the original MQI Communicator's SQLite database without loss."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mqi_communicator.errors import GuardRejectedError, SchemaMismatchError
from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store
from mqi_communicator.statemachine import (
    CASE_STATES_HOLDING_GPU,
    CaseState,
    Evidence,
    EvidenceKind,
    GpuState,
)
from tests.migrations.cli_run import run_cli

LEGACY_DDL = """
CREATE TABLE cases (
    case_id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_path TEXT UNIQUE,
    status TEXT,
    progress INTEGER,
    pueue_group TEXT,
    pueue_task_id INTEGER,
    submitted_at,
    completed_at,
    status_updated_at
);
CREATE TABLE gpu_resources (
    pueue_group TEXT PRIMARY KEY,
    status TEXT,
    assigned_case_id INTEGER
);
"""

T_SUB = "2024-03-05T14:22:10+09:00"
T_UPD = "2024-03-05T18:00:00+09:00"
T_END = "2024-03-06T01:30:05+09:00"  # the previous day in UTC

# case_id, path, status, progress, group, task, submitted, completed, updated
CASES = [
    (3, "/data/QA/case A", "pending", 0, None, None, T_SUB, None, T_SUB),
    (7, "/data/QA/환자 7/beam 1", "running", 40, "gpu-server/gpu0", 15, T_SUB, None, T_UPD),
    (12, "/data/QA/case 12", "completed", 90, "gpu-server/gpu1", 3, T_SUB, T_END, T_END),
    (13, "/data/QA/case 13", "failed", 10, "gpu-server/gpu1", 4, T_SUB, T_END, T_END),
    (15, "/data/QA/case 15", "cancelled", 0, None, None, T_SUB, T_END, T_END),
    (20, "/data/QA/case 20", "unknown", 5, None, None, T_SUB, None, T_UPD),
    (21, "/data/QA/case 21", "weird_status", 5, None, None, "2024-03-05 14:22:10", None, None),
    (22, "/data/QA/case 22", "submitting", 0, "gpu-server/gpu3", None, T_SUB, None, T_UPD),
    (23, "/data/QA/case 23", "processing", 60, "gpu-server/gpu2", 16, T_SUB, None, T_UPD),
    (24, "/data/QA/case 24", "postprocessing", 95, "gpu-server/gpu4", 9, T_SUB, None, T_UPD),
    (25, "/data/QA/case 25", "submitted", 0, None, None, T_SUB, None, T_SUB),
    (26, "/data/QA/case 26", "failed", 30, "gpu-server/gpu5", 11, T_SUB, T_END, T_END),
    (27, "/data/QA/case 27", "running", 20, "gpu-server/gpu5", 17, T_SUB, None, T_UPD),
    (28, "/data/QA/case 28", "submitting", 0, "gpu-server/gpu6", 18, T_SUB, None, T_UPD),
]
GPUS = [
    ("gpu-server/gpu0", "assigned", 7),
    ("gpu-server/gpu1", "available", None),
    ("gpu-server/gpu2", "assigned", 23),
    ("gpu-server/gpu3", "assigned", 22),
    ("gpu-server/gpu4", "assigned", 24),
    ("gpu-server/gpu5", "zombie", 26),
    ("gpu-server/gpu6", "available", None),
    ("gpu-server/gpu7", "available", None),
]

EXPECTED_CASES: dict[int, tuple[CaseState, str | None, str | None]] = {
    # id: (status, gpu_name, job_id)
    3: (CaseState.SUBMITTED, None, None),
    7: (CaseState.RUNNING, "gpu-server/gpu0", "15"),
    12: (CaseState.COMPLETED, None, None),
    13: (CaseState.FAILED, None, None),
    15: (CaseState.CANCELLED, None, None),
    20: (CaseState.FAILED, None, None),
    21: (CaseState.FAILED, None, None),
    22: (CaseState.SUBMITTED, None, None),
    23: (CaseState.RUNNING, "gpu-server/gpu2", "16"),
    24: (CaseState.RETRIEVING, None, None),
    25: (CaseState.SUBMITTED, None, None),
    26: (CaseState.FAILED, None, None),
    27: (CaseState.FAILED, None, None),
    28: (CaseState.RUNNING, "gpu-server/gpu6", "18"),
}
EXPECTED_GPUS: dict[str, tuple[GpuState, int | None, str | None, int | None]] = {
    # name: (status, case_id, job_id, case whose legacy job it holds or quarantines)
    "gpu-server/gpu0": (GpuState.ASSIGNED, 7, "15", 7),
    "gpu-server/gpu1": (GpuState.AVAILABLE, None, None, None),
    "gpu-server/gpu2": (GpuState.ASSIGNED, 23, "16", 23),
    "gpu-server/gpu3": (GpuState.ZOMBIE, None, None, 22),
    "gpu-server/gpu4": (GpuState.ZOMBIE, None, "9", 24),
    "gpu-server/gpu5": (GpuState.ZOMBIE, None, "11", 26),
    "gpu-server/gpu6": (GpuState.ASSIGNED, 28, "18", 28),
    "gpu-server/gpu7": (GpuState.AVAILABLE, None, None, None),
}
#: The cases adopted as running: their jobs are the original system's Pueue tasks.
RUNNING_LEGACY = {7, 23, 28}


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def legacy_db(tmp_path: Path) -> Path:
    path = tmp_path / "mqi_communicator.db"
    con = sqlite3.connect(path)
    con.executescript(LEGACY_DDL)
    con.executemany("INSERT INTO cases VALUES (?,?,?,?,?,?,?,?,?)", CASES)
    con.executemany("INSERT INTO gpu_resources VALUES (?,?,?)", GPUS)
    con.commit()
    con.close()
    return path


def test_store_refuses_the_legacy_file_before_upgrade(legacy_db: Path) -> None:
    with pytest.raises(SchemaMismatchError, match=r"legacy.*mqi-communicator db upgrade --db"):
        Store.open(f"sqlite:///{legacy_db}")
    assert api.current(f"sqlite:///{legacy_db}") is None


def test_db_upgrade_adopts_every_row(legacy_db: Path) -> None:
    url = f"sqlite:///{legacy_db}"
    done = run_cli("db", "upgrade", "--db", url)
    assert done.returncode == 0, done.stderr
    assert api.current(url) == api.head()

    with Store.open(url) as store:
        cases = {c.id: c for c in store.list_cases()}
        gpus = {g.name: g for g in store.list_gpus()}
        assert sorted(cases) == [c[0] for c in CASES]  # every id kept, gaps included
        assert sorted(gpus) == sorted(g[0] for g in GPUS)
        for row in CASES:
            case = cases[row[0]]
            assert case.path == row[1]
            status, gpu_name, job_id = EXPECTED_CASES[row[0]]
            assert (case.status, case.gpu_name, case.job_id) == (status, gpu_name, job_id), row
            legacy = row[0] in RUNNING_LEGACY
            # The original system's label and origin: the engine matches the task by both.
            assert case.label == (f"mqic_case_{row[0]}" if legacy else None), row
            assert case.job_origin == ("legacy" if legacy else None), row
            assert case.host is None  # resolved by the engine from the config
        for name, (status, case_id, job_id, owner) in EXPECTED_GPUS.items():
            g = gpus[name]
            label = f"mqic_case_{owner}" if owner is not None else None
            assert (g.status, g.case_id, g.job_id, g.job_label) == (status, case_id, job_id, label)
            assert g.job_origin == ("legacy" if owner is not None else None), name
            zombie_case = owner if status is GpuState.ZOMBIE else None
            assert g.quarantined_case_id == zombie_case, name

        # Unknown statuses are kept visible, never dropped.
        assert "'unknown'" in (cases[20].failure_reason or "")
        assert "'weird_status'" in (cases[21].failure_reason or "")
        assert "gpu-server/gpu5" in (cases[27].failure_reason or "")
        assert cases[22].attempt == 2 and cases[7].attempt == 1
        assert cases[7].name == "beam 1" and cases[7].progress == 40
        assert cases[12].progress == 100

        # +09:00 -> UTC; naive legacy text is taken as +09:00 too.
        assert cases[3].created_at == _utc(2024, 3, 5, 5, 22, 10)
        assert cases[7].status_updated_at == _utc(2024, 3, 5, 9, 0, 0)
        assert cases[12].completed_at == _utc(2024, 3, 5, 16, 30, 5)
        assert cases[21].created_at == _utc(2024, 3, 5, 5, 22, 10)
        assert cases[7].completed_at is None

        # The invariants the engine relies on hold on the adopted data.
        for case in cases.values():
            holding = [g for g in gpus.values() if g.case_id == case.id]
            if case.status in CASE_STATES_HOLDING_GPU:
                assert len(holding) == 1 and holding[0].status is GpuState.ASSIGNED
                assert holding[0].name == case.gpu_name
            else:
                assert holding == [] and case.gpu_name is None
        for g in gpus.values():
            assert (g.case_id is not None) == (g.status is GpuState.ASSIGNED)

        # An audit row explains each adopted row.
        adopted = [r for r in store.history() if r.trigger == "adopt"]
        assert len(adopted) == len(CASES) + len(GPUS)
        assert {r.case_id for r in adopted if r.entity == "case"} == set(cases)

        # The adopted database is usable: new ids follow, zombies leave only on evidence.
        now = datetime.now(UTC)
        new, created = store.register_case("/data/QA/new case", now)
        assert created and new.id > 28
        claimed = store.claim(3, now, lambda c, g: (f"mqi-{c.id}", f"/r/{c.id}"))
        assert claimed is not None and claimed[1].name == "gpu-server/gpu1"
        unlabelled = Evidence(EvidenceKind.CONFIRMED_ABSENT, None, now, job_id="11")
        with pytest.raises(GuardRejectedError, match="without a label"):
            store.apply(None, None, "gpu-server/gpu5", "recover", evidence=unlabelled, now=now)
        gone = Evidence(EvidenceKind.CONFIRMED_ABSENT, "mqic_case_26", now, job_id="11")
        _, zombie = store.apply(None, None, "gpu-server/gpu5", "recover", evidence=gone, now=now)
        assert zombie is not None and zombie.status is GpuState.AVAILABLE
        assert zombie.quarantined_case_id is None and zombie.job_origin is None
        ended = Evidence(EvidenceKind.OBSERVED_TERMINAL, "mqic_case_7", now, job_id="15")
        c7, g0 = store.apply(7, "job_succeeded", None, "release", evidence=ended, now=now)
        assert c7 is not None and c7.status is CaseState.RETRIEVING
        assert g0 is not None and g0.status is GpuState.AVAILABLE

    again = run_cli("db", "upgrade", "--db", url)
    assert again.returncode == 0 and "already at" in again.stdout
    legacy_tables = sqlite3.connect(legacy_db).execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'legacy%'"
    )
    assert legacy_tables.fetchall() == []


def test_a_database_adopted_by_the_older_0001_gets_its_legacy_jobs_back(legacy_db: Path) -> None:
    """Adopted at 0001 by the code that kept no label: 0002's backfill restores them."""
    url = f"sqlite:///{legacy_db}"
    api.upgrade(url, "0001")
    con = sqlite3.connect(legacy_db)
    # What the older adoption wrote: no label anywhere.
    con.execute("UPDATE cases SET label = NULL")
    con.execute("UPDATE gpu_resources SET job_label = NULL")
    con.execute("UPDATE case_transitions SET label = NULL")
    # Case 23 and its GPU were moved by the engine since: not the adopted job any more.
    con.execute(
        "INSERT INTO case_transitions (at, entity, case_id, gpu_name, from_state, to_state,"
        " trigger, detail) VALUES ('2024-03-06 00:00:00', 'case', 23, 'gpu-server/gpu2',"
        " 'running', 'running', 'confirm_submitted', 'x')"
    )
    con.commit()
    con.close()
    api.upgrade(url)
    with Store.open(url) as store:
        cases = {c.id: c for c in store.list_cases()}
        gpus = {g.name: g for g in store.list_gpus()}
    for cid in (7, 28):
        assert (cases[cid].label, cases[cid].job_origin) == (f"mqic_case_{cid}", "legacy")
    assert (cases[23].label, cases[23].job_origin) == (None, None)
    assert (cases[3].label, cases[3].job_origin) == (None, None)
    g0 = gpus["gpu-server/gpu0"]
    assert (g0.job_label, g0.job_origin) == ("mqic_case_7", "legacy")
    # A zombie whose case the older adoption forgot stays unlabelled: no evidence can
    # match it (only the operator's attested release frees it), but it is marked legacy.
    g5 = gpus["gpu-server/gpu5"]
    assert (g5.job_label, g5.job_origin, g5.quarantined_case_id) == (None, "legacy", None)
    assert gpus["gpu-server/gpu1"].job_origin is None


def test_backfill_gives_a_labelled_legacy_zombie_its_case(legacy_db: Path) -> None:
    url = f"sqlite:///{legacy_db}"
    api.upgrade(url, "0001")
    api.upgrade(url)
    api.downgrade(url, "0001")
    api.upgrade(url)  # the data step runs again, idempotently
    with Store.open(url) as store:
        g4 = store.get_gpu("gpu-server/gpu4")
    assert (g4.job_label, g4.job_origin, g4.quarantined_case_id) == ("mqic_case_24", "legacy", 24)
