"""Refuse a database whose schema is not exactly the one this code was written for."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import Connection

from ..errors import SchemaMismatchError

__all__ = ["check_schema", "schema_problem"]


def _advice(url: str) -> str:
    return f"run `mqi-communicator db upgrade --db {url}`"


def _known(scripts: ScriptDirectory, rev: str) -> bool:
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
    # Imported here: migrations.api imports this package (engine setup).
    from ..migrations.api import head, script_directory

    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables:
        kind = "a legacy MQI Communicator database" if "cases" in tables else "an empty database"
        return f"{url} is {kind} with no schema version; {_advice(url)}"
    revs = MigrationContext.configure(conn).get_current_heads()
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
