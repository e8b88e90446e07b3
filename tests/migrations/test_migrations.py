"""The migration tree: one head, reversible with data, no drift, runnable from the root."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store, make_engine
from mqi_communicator.persistence.schema_check import SCHEMA_HEAD, is_known_revision
from mqi_communicator.statemachine import CaseState

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_single_head_and_linear_history() -> None:
    scripts = ScriptDirectory.from_config(api.alembic_config())
    assert len(scripts.get_heads()) == 1
    assert scripts.get_heads()[0] == api.head()
    revs = api.history()
    assert revs[0].down_revision is None and revs[-1].revision == api.head()
    for older, newer in itertools.pairwise(revs):
        assert newer.down_revision == older.revision


def test_the_fast_schema_check_knows_the_head() -> None:
    # Store.open compares with this constant before loading Alembic (schema_check.py).
    assert api.head() == SCHEMA_HEAD


def test_revisions_are_numbered_as_the_schema_check_assumes() -> None:
    # persistence may not import migrations (they build on it), so the schema check knows
    # the tree by this rule alone: 0001, 0002, ... up to SCHEMA_HEAD, one after another.
    revs = [r.revision for r in api.history()]
    assert revs == [f"{n:04d}" for n in range(1, len(revs) + 1)]
    assert all(is_known_revision(r) for r in revs)
    after = f"{len(revs) + 1:04d}"
    wide_digits = "\uff10\uff10\uff10\uff11"  # str.isdigit() says yes to these
    assert not any(is_known_revision(r) for r in ("0000", after, "ffff9999", "", wide_digits))


def test_upgrade_downgrade_upgrade_with_data(db_url: str) -> None:
    api.upgrade(db_url)
    with Store.open(db_url) as store:
        store.sync_gpus([("h/g0", "h")], NOW)
        rec, _ = store.register_case("/data/c1", NOW)
        assert store.claim(rec.id, NOW, lambda c, g: ("l1", "/r/1")) is not None
    assert api.current(db_url) == api.head()
    # Walk down one revision at a time to base, then back up.
    for rev in reversed(api.history()):
        api.downgrade(db_url, rev.down_revision or "base")
    assert api.current(db_url) is None
    assert _tables(db_url) <= {"alembic_version"}
    api.upgrade(db_url)
    assert {"cases", "gpu_resources", "case_transitions"} <= _tables(db_url)
    with Store.open(db_url) as store:
        rec, created = store.register_case("/data/c1", NOW)
        assert created and rec.status is CaseState.SUBMITTED


def test_models_and_migrations_do_not_drift(db_url: str) -> None:
    api.upgrade(db_url)
    # `alembic check`: raises if autogenerate would emit any operation.
    command.check(api.alembic_config(db_url))


def test_alembic_from_repo_root_honours_env(tmp_path: Path) -> None:
    db = tmp_path / "root.db"
    env = {**os.environ, "MQI_DATABASE_URL": f"sqlite:///{db}"}
    alembic = Path(sys.executable).with_name("alembic")
    done = subprocess.run(
        [str(alembic), "upgrade", "head"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert api.current(f"sqlite:///{db}") == api.head()
    cur = subprocess.run(
        [str(alembic), "current"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert cur.returncode == 0 and api.head() in cur.stdout


def test_alembic_x_db_argument(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    env = {k: v for k, v in os.environ.items() if k != "MQI_DATABASE_URL"}
    alembic = Path(sys.executable).with_name("alembic")
    done = subprocess.run(
        [str(alembic), "-x", f"db=sqlite:///{db}", "upgrade", "head"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert api.current(f"sqlite:///{db}") == api.head()
