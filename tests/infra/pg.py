"""PostgreSQL for tests: a fresh database per test on the server at MQI_TEST_POSTGRES_URL.

``pg_url`` creates ``mqi_t_<random>`` on the server (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``), yields its URL and drops it
afterwards. Without a server the test skips with the reason, or fails in CI /
with ``MQI_REQUIRE_POSTGRES=1`` (see :mod:`tests.infra.require`).

``db_url`` is parametrized over ``sqlite`` and ``postgres``: an EMPTY database URL
(no schema); tests upgrade it themselves or use the store fixtures.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.require import unavailable

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def admin_url() -> str:
    """The URL of the server's maintenance database given to the tests."""
    return os.environ.get("MQI_TEST_POSTGRES_URL", DEFAULT_URL)


def _psycopg_conninfo(url: str) -> str:
    # psycopg wants a libpq URL, without SQLAlchemy's "+driver".
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _pg_server() -> str | None:
    """Probe the server once; the reason it is unusable, or None if it is fine."""
    try:
        import psycopg
    except ImportError as err:
        return f"psycopg is not installed ({err})"
    try:
        with psycopg.connect(_psycopg_conninfo(admin_url()), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as err:  # any failure means "no usable server"
        return f"cannot connect to {admin_url()}: {err}".strip()
    return None


@pytest.fixture
def pg_url(_pg_server: str | None) -> Iterator[str]:
    """URL of a brand-new, empty PostgreSQL database, dropped after the test."""
    if _pg_server is not None:
        unavailable("postgres", _pg_server)
    import psycopg

    name = f"mqi_t_{uuid.uuid4().hex[:12]}"
    info = _psycopg_conninfo(admin_url())
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(admin_url(), name)
    finally:
        with psycopg.connect(info, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL on each backend (SQLite file, fresh PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'mqi.db').as_posix()}"
    return str(request.getfixturevalue("pg_url"))
