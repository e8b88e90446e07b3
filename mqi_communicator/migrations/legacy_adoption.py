"""Adopting the original MQI Communicator's SQLite database (used by revision 0001).

:func:`plan` is pure: legacy rows in, new rows out. The mapping is documented in
``versions/0001_initial_schema.py``. The rest moves the legacy tables aside, inserts
the planned rows and drops the legacy tables, all inside the migration's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

__all__ = [
    "LegacyTables",
    "Plan",
    "adopt",
    "detect",
    "drop_aside",
    "legacy_label",
    "move_aside",
    "plan",
]

#: The legacy system ran in Korea; timestamps without an offset are taken as +09:00.
LEGACY_ZONE = timezone(timedelta(hours=9))

_WAITING = {"pending", "submitted", "queued", "new"}
_RUNNING = {"running", "processing"}
_RETRIEVING = {"postprocessing", "downloading"}
_COMPLETED = {"completed", "done", "success"}
_FAILED = {"failed", "error"}
_CANCELLED = {"cancelled", "canceled"}
_CASE_SELECT = (
    "SELECT case_id, case_path, status, progress, pueue_group, pueue_task_id, "
    "submitted_at, completed_at, status_updated_at FROM legacy_cases"
)


@dataclass(frozen=True)
class LegacyTables:
    """Which legacy tables exist (each may be missing)."""

    cases: bool
    gpus: bool


@dataclass
class Plan:
    """New rows for ``cases``, ``gpu_resources`` and ``case_transitions``."""

    cases: list[dict[str, Any]] = field(default_factory=list)
    gpus: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)


def detect(bind: Connection) -> LegacyTables | None:
    """Return the legacy tables found, or None for a fresh (or foreign) database."""
    insp = sa.inspect(bind)
    names = set(insp.get_table_names())

    def cols(table: str) -> set[str]:
        return {c["name"] for c in insp.get_columns(table)} if table in names else set()

    found = LegacyTables(
        cases="case_id" in cols("cases"), gpus="pueue_group" in cols("gpu_resources")
    )
    return found if (found.cases or found.gpus) else None


def move_aside(legacy: LegacyTables) -> None:
    """Rename the legacy tables so the new ones can take their names."""
    if legacy.cases:
        op.rename_table("cases", "legacy_cases")
    if legacy.gpus:
        op.rename_table("gpu_resources", "legacy_gpu_resources")


def drop_aside(legacy: LegacyTables) -> None:
    """Drop the renamed legacy tables once their rows are copied."""
    if legacy.gpus:
        op.drop_table("legacy_gpu_resources")
    if legacy.cases:
        op.drop_table("legacy_cases")


def parse_time(value: Any) -> datetime | None:
    """Legacy timestamp -> aware UTC (None when empty or unreadable)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LEGACY_ZONE)
    return parsed.astimezone(UTC)


def legacy_label(case_id: int) -> str:
    """The label the original system gave the Pueue task of case ``case_id``.

    Its ``workflow_submitter.py`` ran ``pueue add --label mqic_case_<id>``; that label,
    with the task id, is how an adopted job is recognised (never the id alone).
    """
    return f"mqic_case_{case_id}"


def _task_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _clamp(value: Any) -> int:
    try:
        return max(0, min(100, int(value)))
    except (TypeError, ValueError):
        return 0


def _base_status(raw: Any) -> tuple[str, str | None]:
    """(new status, failure reason) for statuses that need no GPU decision."""
    key = str(raw).strip().lower() if raw is not None else ""
    if key in _WAITING:
        return "submitted", None
    if key in _RETRIEVING:
        return "retrieving", None
    if key in _COMPLETED:
        return "completed", None
    if key in _FAILED:
        return "failed", f"legacy status {raw!r}"
    if key in _CANCELLED:
        return "cancelled", None
    if key in _RUNNING or key == "submitting":
        return "running?", None
    return "failed", f"legacy status {raw!r} has no equivalent; adopted as failed"


def plan(cases: list[dict[str, Any]], gpus: list[dict[str, Any]], now: datetime) -> Plan:
    """Map legacy rows (dicts keyed by legacy column names) to new rows."""
    out = Plan()
    gpu_by_name = {str(g["pueue_group"]): g for g in gpus}
    holder_of: dict[str, int] = {}  # GPU name -> case adopted as running on it
    # GPU name -> (case, job id) of the job to keep on the zombie
    zombie_job: dict[str, tuple[int, str | None]] = {}
    task_of = {int(c["case_id"]): _task_id(c["pueue_task_id"]) for c in cases}

    for c in sorted(cases, key=lambda r: int(r["case_id"])):
        cid = int(c["case_id"])
        raw = c["status"]
        status, reason = _base_status(raw)
        task = task_of[cid]
        attempt = 1
        gpu_name: str | None = None
        pointed = [n for n, g in gpu_by_name.items() if g["assigned_case_id"] == cid]
        candidate = pointed[0] if pointed else (str(c["pueue_group"]) if c["pueue_group"] else None)
        key = str(raw).strip().lower() if raw is not None else ""
        if status == "running?" and key == "submitting" and task is None:
            status, attempt = "submitted", 2
            if candidate is not None:
                zombie_job[candidate] = (cid, None)
        elif status == "running?":
            g = gpu_by_name.get(candidate) if candidate else None
            g_status = str(g["status"]).strip().lower() if g else None
            taken = g is not None and g["assigned_case_id"] not in (None, cid)
            if candidate is None:
                status, reason = "failed", f"legacy status {raw!r} but no GPU recorded"
            elif task is None:
                status = "failed"
                reason = f"legacy status {raw!r} without a pueue task id; GPU quarantined"
                zombie_job[candidate] = (cid, None)
            elif candidate in holder_of or taken or g_status not in (None, "available", "assigned"):
                status = "failed"
                reason = f"legacy status {raw!r} on GPU {candidate!r}, which is not free for it"
                if g_status != "zombie" and candidate not in holder_of and not taken:
                    zombie_job[candidate] = (cid, task)
            else:
                status, gpu_name = "running", candidate
                holder_of[candidate] = cid
        submitted = parse_time(c["submitted_at"])
        updated = parse_time(c["status_updated_at"])
        created = submitted or updated or now
        terminal = status in {"completed", "failed", "cancelled"}
        label = legacy_label(cid) if status == "running" else None
        completed = (parse_time(c["completed_at"]) or updated or now) if terminal else None
        out.cases.append(
            {
                "id": cid,
                "path": str(c["case_path"]),
                "status": status,
                "progress": 100 if status == "completed" else _clamp(c["progress"]),
                "attempt": attempt,
                "label": label,
                "job_id": task if status == "running" else None,
                "remote_dir": None,
                "host": None,
                "gpu_name": gpu_name,
                "failure_reason": reason,
                "cancel_requested": False,
                "kill_requested_at": None,
                "kill_reason": None,
                "transient_failures": 0,
                "next_attempt_at": None,
                "created_at": created,
                "status_updated_at": updated or created,
                "started_at": None,
                "completed_at": completed,
                "version": 1,
            }
        )
        out.audit.append(
            _audit(
                now,
                "case",
                cid,
                gpu_name,
                status,
                f"adopted from legacy status {raw!r}",
                attempt=attempt,
                label=label,
            )
        )

    for name in sorted(set(gpu_by_name) | set(holder_of) | set(zombie_job)):
        g = gpu_by_name.get(name)
        legacy_status = str(g["status"]).strip().lower() if g else None
        legacy_case = g["assigned_case_id"] if g else None
        row: dict[str, Any] = {
            "name": name,
            "host": None,
            "status": "available",
            "assigned_case_id": None,
            "job_label": None,
            "job_id": None,
            "job_dir": None,
            "offline_requested": False,
            "kill_requested_at": None,
            "next_check_at": None,
            "status_updated_at": now,
            "version": 1,
        }
        if name in holder_of:
            holder = holder_of[name]
            row.update(
                status="assigned",
                assigned_case_id=holder,
                job_id=task_of[holder],
                job_label=legacy_label(holder),
            )
        elif legacy_status == "available" and name not in zombie_job:
            pass
        else:
            owner, job = _zombie_job(legacy_case, task_of, zombie_job.get(name))
            row.update(
                status="zombie",
                job_id=job,
                job_label=legacy_label(owner) if owner is not None else None,
            )
        out.gpus.append(row)
        out.audit.append(
            _audit(
                now,
                "gpu",
                row["assigned_case_id"],
                name,
                row["status"],
                f"adopted from legacy status {legacy_status!r}",
            )
        )
    return out


def _zombie_job(
    legacy_case: Any, task_of: dict[int, str | None], fallback: tuple[int, str | None] | None
) -> tuple[int | None, str | None]:
    """(case, task id) of the job a zombie keeps: its legacy case's, else ``fallback``'s.

    A zombie with neither keeps no label: no evidence can ever match it, so only an
    operator's attested release frees it.
    """
    try:
        known = int(legacy_case) if legacy_case is not None else None
    except (TypeError, ValueError):
        known = None
    if known is not None and known not in task_of:
        known = None  # points at a case the legacy table does not have
    if known is not None and task_of[known] is not None:
        return known, task_of[known]
    if fallback is not None:
        return fallback
    return known, None


def _audit(
    now: datetime,
    entity: str,
    case_id: int | None,
    gpu: str | None,
    status: str,
    detail: str,
    attempt: int | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    return {
        "at": now,
        "entity": entity,
        "case_id": case_id,
        "gpu_name": gpu,
        "from_state": "-",
        "to_state": status,
        "trigger": "adopt",
        "evidence": None,
        "detail": detail,
        "attempt": attempt,
        "label": label,
    }


def _for_db(rows: list[dict[str, Any]], dialect: str) -> list[dict[str, Any]]:
    if dialect != "sqlite":
        return rows
    # Same storage as the models' UtcDateTime: naive UTC on SQLite.
    return [
        {k: (v.replace(tzinfo=None) if isinstance(v, datetime) else v) for k, v in r.items()}
        for r in rows
    ]


def adopt(bind: Connection, legacy: LegacyTables) -> Plan:
    """Copy the legacy rows (already moved aside) into the new tables."""
    cases = [dict(r._mapping) for r in bind.execute(sa.text(_CASE_SELECT))] if legacy.cases else []
    gpus = (
        [
            dict(r._mapping)
            for r in bind.execute(
                sa.text("SELECT pueue_group, status, assigned_case_id FROM legacy_gpu_resources")
            )
        ]
        if legacy.gpus
        else []
    )
    result = plan(cases, gpus, datetime.now(UTC))
    meta = sa.MetaData()
    dialect = bind.dialect.name
    for table, rows in (
        ("cases", result.cases),
        ("gpu_resources", result.gpus),
        ("case_transitions", result.audit),
    ):
        if rows:
            t = sa.Table(table, meta, autoload_with=bind)
            bind.execute(t.insert(), _for_db(rows, dialect))
    if dialect == "postgresql":
        for table in ("cases", "case_transitions"):
            bind.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                )
            )
    return result
