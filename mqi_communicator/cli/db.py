"""``mqi-communicator db ...``: create, upgrade and inspect the database schema."""

from __future__ import annotations

import os

import click

from ..migrations import api
from ..persistence.engine_setup import display_url, normalize_url

__all__ = ["URL_ENV", "database_url", "db", "db_option"]

#: Environment variable consulted when ``--db`` is not given.
URL_ENV = "MQI_DATABASE_URL"

db_option = click.option(
    "--db",
    "db_url",
    metavar="URL",
    default=None,
    help=f"Database URL (sqlite:///path.db, postgresql://...) or a .db path; default: ${URL_ENV}.",
)


def database_url(given: str | None) -> str:
    """The URL from ``--db``, else ``$MQI_DATABASE_URL``; a usage error (exit 2) if neither."""
    url = given or os.environ.get(URL_ENV)
    if not url:
        raise click.UsageError(f"no database given: pass --db URL or set {URL_ENV}")
    return normalize_url(url)


@click.group()
def db() -> None:
    """Create, upgrade and inspect the database schema."""


@db.command()
@db_option
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(db_url: str | None, revision: str) -> None:
    """Create or upgrade the schema (adopts a legacy MQI Communicator database)."""
    url = database_url(db_url)
    before = api.current(url)
    api.upgrade(url, revision)
    after = api.current(url)
    shown = display_url(url)
    if before == after:
        click.echo(f"{shown}: already at {after}")
    else:
        click.echo(f"{shown}: upgraded from {before or 'nothing'} to {after}")


@db.command()
@db_option
@click.argument("revision")
def downgrade(db_url: str | None, revision: str) -> None:
    """Downgrade the schema to REVISION (``base`` drops every table)."""
    url = database_url(db_url)
    before = api.current(url)
    api.downgrade(url, revision)
    click.echo(f"{display_url(url)}: downgraded from {before} to {api.current(url) or 'base'}")


@db.command()
@db_option
def current(db_url: str | None) -> None:
    """Print the database's schema revision (``none`` if not versioned)."""
    url = database_url(db_url)
    rev = api.current(url)
    head = api.head()
    if rev is None:
        click.echo("none")
    else:
        click.echo(f"{rev} (head)" if rev == head else f"{rev} (head is {head})")


@db.command()
def history() -> None:
    """List the schema revisions this version knows, oldest first."""
    head = api.head()
    for rev in api.history():
        mark = " (head)" if rev.revision == head else ""
        click.echo(f"{rev.down_revision or 'base'} -> {rev.revision}{mark}: {rev.doc}")
