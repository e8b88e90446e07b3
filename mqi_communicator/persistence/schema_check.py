"""Refuse a database whose schema is not exactly the one this code was written for.

One plain query, no Alembic: every command opens the store, so this is on the path of
``top --once`` and ``status``. It does not import :mod:`mqi_communicator.migrations`
either (migrations build on this package: importing them back would be a cycle). It
relies instead on the numbering rule of ``migrations/versions``: revisions are
``0001``, ``0002``, ... in order, one after another, and :data:`SCHEMA_HEAD` is the last
(tests/migrations/test_migrations.py checks both against Alembic's script directory).
So a recorded revision is known exactly when it is such a number up to the head.
"""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection

from ..errors import SchemaMismatchError

__all__ = ["SCHEMA_HEAD", "check_schema", "is_known_revision", "schema_problem"]

#: The head revision of ``migrations/versions``: bump it with each new migration
#: (tests/migrations/test_migrations.py fails until it equals Alembic's head).
SCHEMA_HEAD = "0007"


def _advice(url: str) -> str:
    return f"run `mqi-communicator db upgrade --db {url}`"


def is_known_revision(rev: str) -> bool:
    """True when ``rev`` is a revision of this code's tree: ``0001`` up to the head."""
    return (
        len(rev) == len(SCHEMA_HEAD)
        and rev.isascii()
        and rev.isdigit()
        and ("0001" <= rev <= SCHEMA_HEAD)
    )


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
    if not revs:
        return f"{url} has no schema version recorded; {_advice(url)}"
    for rev in revs:
        if not is_known_revision(rev):
            return (
                f"{url} is at schema revision {rev!r}, which this version of "
                "mqi-communicator does not know: the database is ahead of the code; "
                "upgrade mqi-communicator (do not downgrade the database blindly)"
            )
    return f"{url} is at schema revision {', '.join(revs)}, behind {SCHEMA_HEAD}; {_advice(url)}"


def check_schema(engine: Engine, url: str) -> None:
    """Raise :class:`SchemaMismatchError` unless the database is at this code's head."""
    with engine.connect() as conn:
        problem = schema_problem(conn, url)
    if problem is not None:
        raise SchemaMismatchError(problem)
