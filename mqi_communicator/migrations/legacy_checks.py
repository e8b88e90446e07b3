"""Checks a legacy database must pass before it is adopted (revision 0001).

They run before anything is renamed or created, so a refused database is left exactly
as it was (the error says what to fix, and ``db upgrade`` can simply be run again).
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import LegacyAdoptionError

__all__ = ["duplicate_paths", "refuse_duplicate_paths"]

#: How many duplicated paths the refusal names (the rest are counted).
_SHOWN = 5


def duplicate_paths(rows: list[tuple[int, object]]) -> dict[str, list[int]]:
    """``{path: case ids}`` for every path held by more than one legacy case row.

    Paths compare as the adoption stores them (``str(case_path)``), so two NULL paths
    are a duplicate too.
    """
    ids: dict[str, list[int]] = defaultdict(list)
    for case_id, path in rows:
        ids[str(path)].append(int(case_id))
    return {p: sorted(c) for p, c in sorted(ids.items()) if len(c) > 1}


def refuse_duplicate_paths(bind: Connection) -> None:
    """Raise :class:`LegacyAdoptionError` if two legacy ``cases`` rows share a path.

    The new schema holds one case per folder (``cases.path`` is unique, and intake
    finds a case by its path), so such a database cannot be adopted as it is. Rather
    than guess which row is the real one, or rename a path the operator knows, the
    upgrade refuses and names every duplicated path with its case ids.
    """
    rows = [(r[0], r[1]) for r in bind.execute(sa.text("SELECT case_id, case_path FROM cases"))]
    dups = duplicate_paths(rows)
    if not dups:
        return
    named = "; ".join(
        f"{path!r} on cases {', '.join(map(str, ids))}" for path, ids in list(dups.items())[:_SHOWN]
    )
    more = f" (and {len(dups) - _SHOWN} more)" if len(dups) > _SHOWN else ""
    raise LegacyAdoptionError(
        f"cannot adopt the legacy database: {len(dups)} case_path value(s) are held by "
        f"more than one case: {named}{more}. Nothing was changed. Keep one row per path "
        "(delete or rename the others in the legacy cases table, e.g. append ' (old)' to "
        "the older row's case_path), then run `mqi-communicator db upgrade` again"
    )
