"""Alembic environment: the package's metadata, batch mode on SQLite, one URL source.

The URL comes from ``-x db=URL``, else the programmatic ``config.attributes["url"]``
(set by :mod:`.api`), else ``sqlalchemy.url`` in the ini file, else ``MQI_DATABASE_URL``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from mqi_communicator.errors import ConfigError
from mqi_communicator.persistence.engine_setup import make_engine, normalize_url, write_engine
from mqi_communicator.persistence.models import Base

config = context.config
if config.config_file_name is not None:  # run through the `alembic` command with an ini
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def _url() -> str:
    xargs = context.get_x_argument(as_dictionary=True)
    url = (
        xargs.get("db")
        or config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("MQI_DATABASE_URL")
    )
    if not url:
        raise ConfigError(
            "no database URL: pass -x db=URL or set MQI_DATABASE_URL "
            "(or use `mqi-communicator db upgrade --db URL`)"
        )
    return normalize_url(str(url))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL without a database (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a live database, all revisions in one transaction."""
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    # Foreign keys off while migrating: batch mode drops and recreates tables.
    # BEGIN IMMEDIATE on SQLite: a migration must not interleave with a writer.
    engine = make_engine(_url(), poolclass=NullPool, foreign_keys=False)
    try:
        with write_engine(engine).connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
