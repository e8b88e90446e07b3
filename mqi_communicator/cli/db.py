"""``mqi-communicator db ...``: create, upgrade and inspect the database schema."""

from __future__ import annotations

import os
import sys

import click

from ..dblock import schema_change_lock
from ..migrations import api
from ..persistence.engine_setup import display_url, normalize_url
from .output import EXIT_USAGE, fail

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
@click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal)."
)
@click.argument("revision")
def downgrade(db_url: str | None, yes: bool, revision: str) -> None:
    """Downgrade the schema to REVISION (``base`` drops every table and every case).

    Refused while an engine runs on the database (SQLite: its lock file; PostgreSQL: the
    engines' advisory lock), which is held until the downgrade ends. Asks first on a
    terminal; without one, --yes is required.
    """
    url = database_url(db_url)
    lock = schema_change_lock(url)
    if lock is not None:
        lock.acquire()  # before asking: no point confirming what cannot run
    try:
        before = api.current(url)
        shown = display_url(url)
        if not yes:
            _confirm(f"downgrade {shown} from {before or 'nothing'} to {revision}", revision)
        api.downgrade(url, revision)
        click.echo(f"{shown}: downgraded from {before} to {api.current(url) or 'base'}")
    finally:
        if lock is not None:
            lock.release()


def _confirm(action: str, revision: str) -> None:
    """Ask on a terminal; without one, refuse (exit 2) and say to pass --yes."""
    loses = (
        " This drops every table, with every case and its history." if revision == "base" else ""
    )
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail(f"{action}?{loses} Nothing done: pass --yes to confirm", EXIT_USAGE)
    click.confirm(f"{action}?{loses}", abort=True)


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
