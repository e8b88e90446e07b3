"""Alembic migrations: one tree for SQLite and PostgreSQL.

Use :mod:`mqi_communicator.migrations.api` (or ``mqi-communicator db upgrade``) to run them.
"""

__all__: list[str] = []
