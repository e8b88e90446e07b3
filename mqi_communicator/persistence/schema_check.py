"""Refuse a database whose schema is not exactly the one this code was written for.

The common case (the database is at :data:`SCHEMA_HEAD`) is one plain query; Alembic,
about 0.12 s to import, is loaded only to explain a mismatch. Every command opens the
store, so this is on the path of ``top --once`` and ``status``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection

from ..errors import SchemaMismatchError

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

__all__ = ["SCHEMA_HEAD", "check_schema", "schema_problem"]

#: The head revision of ``migrations/versions``: bump it with each new migration
#: (tests/migrations/test_migrations.py fails until it equals Alembic's head).
SCHEMA_HEAD = "0005"


def _advice(url: str) -> str:
    return f"run `mqi-communicator db upgrade --db {url}`"


def _known(scripts: ScriptDirectory, rev: str) -> bool:
    from alembic.util import CommandError

    try:
        return scripts.get_revision(rev) is not None
    except CommandError:
        return False


def schema_problem(conn: Connection, url: str) -> str | None:
    """Describe why the schema at ``conn`` does not match this code, or None if it does.

    Args:
        conn: An open connection.
        url: The URL to name in the message (password hidden).
    """
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables:
        kind = "a legacy MQI Communicator database" if "cases" in tables else "an empty database"
        return f"{url} is {kind} with no schema version; {_advice(url)}"
    recorded = conn.execute(text("SELECT version_num FROM alembic_version"))
    revs = tuple(str(r) for r in recorded.scalars())
    if revs == (SCHEMA_HEAD,):
        return None
    # Imported here: migrations.api imports this package (engine setup), and Alembic is
    # only needed to explain a mismatch.
    from ..migrations.api import head, script_directory

    want = head()
    if revs == (want,):
        return None
    if not revs:
        return f"{url} has no schema version recorded; {_advice(url)}"
    scripts = script_directory()
    for rev in revs:
        if not _known(scripts, rev):
            return (
                f"{url} is at schema revision {rev!r}, which this version of "
                "mqi-communicator does not know: the database is ahead of the code; "
                "upgrade mqi-communicator (do not downgrade the database blindly)"
            )
    return f"{url} is at schema revision {', '.join(revs)}, behind {want}; {_advice(url)}"


def check_schema(engine: Engine, url: str) -> None:
    """Raise :class:`SchemaMismatchError` unless the database is at this code's head."""
    with engine.connect() as conn:
        problem = schema_problem(conn, url)
    if problem is not None:
        raise SchemaMismatchError(problem)
