"""``mqi-communicator db ...`` through the real console script."""

from __future__ import annotations

from pathlib import Path

from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store
from tests.migrations.cli_run import run_cli


def test_upgrade_creates_a_fresh_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    up = run_cli("db", "upgrade", "--db", url)
    assert up.returncode == 0, up.stderr
    assert f"to {api.head()}" in up.stdout
    cur = run_cli("db", "current", "--db", url)
    assert cur.returncode == 0 and cur.stdout.strip() == f"{api.head()} (head)"
    again = run_cli("db", "upgrade", "--db", url)
    assert again.returncode == 0 and "already at" in again.stdout
    Store.open(url).close()


def test_history_lists_every_revision() -> None:
    out = run_cli("db", "history")
    assert out.returncode == 0, out.stderr
    assert "base -> 0001" in out.stdout and "Initial schema" in out.stdout
    assert f"-> {api.head()} (head)" in out.stdout


def test_url_from_environment_and_bare_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    up = run_cli("db", "upgrade", env={"MQI_DATABASE_URL": url})
    assert up.returncode == 0, up.stderr
    bare = run_cli("db", "current", "--db", "env.db", cwd=tmp_path)
    assert bare.stdout.strip() == f"{api.head()} (head)", bare.stderr


def test_no_url_is_a_usage_error() -> None:
    out = run_cli("db", "upgrade")
    assert out.returncode == 2
    assert "no database given: pass --db URL or set MQI_DATABASE_URL" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_expected_errors_have_no_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    bad_rev = run_cli("db", "upgrade", "--db", url, "--revision", "nope")
    assert bad_rev.returncode == 1 and "nope" in bad_rev.stderr
    assert "Traceback" not in bad_rev.stderr
    down = run_cli("db", "postgresql://nobody:pw@127.0.0.1:1/none")
    assert down.returncode == 2  # not a command
    unreachable = run_cli("db", "current", "--db", "postgresql://nobody:pw@127.0.0.1:1/none")
    assert unreachable.returncode == 1 and "database error" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert run_cli("db", "upgrade", "--db", url).returncode == 0
    down = run_cli("db", "downgrade", "--db", url, "base", "--yes")
    assert down.returncode == 0, down.stderr
    assert run_cli("db", "current", "--db", url).stdout.strip() == "none"
    assert run_cli("db", "upgrade", "--db", url).returncode == 0
