"""Revision 0002's data step: mark the jobs adopted at 0001 as ``legacy`` jobs.

Revision 0001 adopts the original system's database but has no ``job_origin`` nor
``quarantined_case_id`` column, and databases adopted by an older 0001 stored no label
at all. This step finds the rows 0001 adopted (an ``adopt`` audit row) that the engine
has not moved since (no later transition), and gives them what a legacy job needs:

* a running case: ``label`` = ``mqic_case_<id>`` when missing, ``job_origin`` = legacy;
* its ``assigned`` GPU: ``job_label`` = ``mqic_case_<case>`` when missing, origin legacy;
* a ``zombie``: origin legacy, and ``quarantined_case_id`` = the case its label names
  (when that case exists). A zombie adopted without a label stays without one: the
  older 0001 did not keep which case it came from, and guessing would be a guess about
  which job may still run. Only ``gpus release --confirm-job-gone`` frees it.

:func:`plan_backfill` is pure; :func:`backfill` reads and writes through the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .legacy_adoption import legacy_label

__all__ = ["BackfillPlan", "backfill", "plan_backfill"]

_LEGACY_LABEL = re.compile(r"mqic_case_(\d+)")
#: Audit triggers that do not move a row (anything else means the engine took over).
_STILL = {"adopt", "note", "add", "register"}


@dataclass
class BackfillPlan:
    """Column updates: case id -> fields, GPU name -> fields."""

    cases: dict[int, dict[str, Any]] = field(default_factory=dict)
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)


def plan_backfill(
    audit: list[dict[str, Any]], cases: list[dict[str, Any]], gpus: list[dict[str, Any]]
) -> BackfillPlan:
    """Decide the updates from the audit rows and the current case and GPU rows.

    Args:
        audit: ``entity``, ``case_id``, ``gpu_name``, ``trigger`` of every audit row.
        cases: ``id``, ``status``, ``label`` of every case.
        gpus: ``name``, ``status``, ``assigned_case_id``, ``job_label`` of every GPU.
    """

    def ids(entity: str, key: str, moved: bool) -> set[Any]:
        return {
            r[key]
            for r in audit
            if r["entity"] == entity
            and (r["trigger"] not in _STILL if moved else r["trigger"] == "adopt")
        }

    adopted_cases, moved_cases = ids("case", "case_id", False), ids("case", "case_id", True)
    adopted_gpus, moved_gpus = ids("gpu", "gpu_name", False), ids("gpu", "gpu_name", True)
    known = {int(c["id"]) for c in cases}
    out = BackfillPlan()
    for c in cases:
        cid = int(c["id"])
        if cid in adopted_cases and cid not in moved_cases and c["status"] == "running":
            out.cases[cid] = {"label": c["label"] or legacy_label(cid), "job_origin": "legacy"}
    for g in gpus:
        name = g["name"]
        if name not in adopted_gpus or name in moved_gpus:
            continue
        if g["status"] == "assigned" and g["assigned_case_id"] is not None:
            label = g["job_label"] or legacy_label(int(g["assigned_case_id"]))
            out.gpus[name] = {"job_label": label, "job_origin": "legacy"}
        elif g["status"] == "zombie":
            found = _LEGACY_LABEL.fullmatch(g["job_label"] or "")
            owner = int(found.group(1)) if found else None
            out.gpus[name] = {
                "job_origin": "legacy",
                "quarantined_case_id": owner if owner in known else None,
            }
    return out


def backfill(bind: Connection) -> BackfillPlan:
    """Apply :func:`plan_backfill` to the database behind ``bind`` (inside the migration)."""

    def rows(sql: str) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in bind.execute(sa.text(sql))]

    audit = rows("SELECT entity, case_id, gpu_name, trigger FROM case_transitions")
    if not any(r["trigger"] == "adopt" for r in audit):
        return BackfillPlan()
    result = plan_backfill(
        audit,
        rows("SELECT id, status, label FROM cases"),
        rows("SELECT name, status, assigned_case_id, job_label FROM gpu_resources"),
    )
    meta = sa.MetaData()
    cases = sa.Table("cases", meta, autoload_with=bind)
    gpus = sa.Table("gpu_resources", meta, autoload_with=bind)
    for cid, values in result.cases.items():
        bind.execute(cases.update().where(cases.c.id == cid).values(**values))
    for name, values in result.gpus.items():
        bind.execute(gpus.update().where(gpus.c.name == name).values(**values))
    return result
