"""Run the migrations from code: used by the CLI, the tests and ``Store`` checks.

Works from an installed wheel: the script location is this package's directory,
not a path relative to the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from ..persistence.engine_setup import make_engine, normalize_url

__all__ = [
    "MIGRATIONS_DIR",
    "RevisionInfo",
    "alembic_config",
    "current",
    "downgrade",
    "head",
    "history",
    "script_directory",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class RevisionInfo:
    """One revision of the migration tree."""

    revision: str
    down_revision: str | None
    doc: str


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for this package's migrations, optionally bound to ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Via attributes, not set_main_option: ConfigParser would choke on '%' in URLs.
        cfg.attributes["url"] = normalize_url(url)
    return cfg


@lru_cache(maxsize=1)
def script_directory() -> ScriptDirectory:
    """The (cached) script directory of this package's migrations."""
    return ScriptDirectory.from_config(alembic_config())


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (adopting a legacy database)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``base`` drops everything)."""
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None (empty or legacy database)."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision this code knows."""
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migration tree must have one head, found {heads}")
    return heads[0]


def history() -> list[RevisionInfo]:
    """Every revision, oldest first."""
    revs = list(script_directory().walk_revisions())
    revs.reverse()
    out = []
    for r in revs:
        down = r.down_revision
        out.append(
            RevisionInfo(
                revision=r.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                doc=r.doc or "",
            )
        )
    return out
