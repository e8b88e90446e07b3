"""Bad input to the real console script: one line naming the problem, exit 1 or 2, no traceback."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_communicator.migrations.api import head, upgrade
from tests.migrations.cli_run import run_cli

from .conftest import local_config, write_config


def _clear(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit ``code``, no traceback, an ``error:`` line on stderr holding every needle."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths made immutable with ``chattr +i`` (read-only even for root); undone after."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    paths: list[Path] = []
    yield paths
    for p in paths:
        subprocess.run(["chattr", "-i", str(p)], check=False)


def _chattr(paths: list[Path], path: Path) -> None:
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not possible here: {done.stderr.strip()}")
    paths.append(path)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_bytes(b"these are my notes, not a database\n" * 200)
    for args in (["db", "current"], ["db", "upgrade"]):
        result = run_cli(*args, "--db", f"sqlite:///{junk}")
        _clear(result, 2, f"error: {junk}: not an SQLite database")
    cfg = local_config(tmp_path, database_url=f"sqlite:///{junk}")
    path = write_config(tmp_path, cfg)
    for args in (["status"], ["cases", "list"], ["run", "--once"]):
        _clear(run_cli(*args, "--config", str(path)), 2, f"{junk}: not an SQLite database")
    assert junk.read_bytes().startswith(b"these are my notes")


@pytest.mark.parametrize("url", ["mysql://u:secret@db.example/mqi", "oracle://u@h/x"])
def test_an_unsupported_database_backend(tmp_path: Path, url: str) -> None:
    backend = url.split(":", 1)[0]
    for args in (["db", "upgrade", "--db", url], ["db", "current", "--db", url]):
        _clear(run_cli(*args), 2, f"unsupported database backend {backend!r}", "postgresql://")
    path = write_config(tmp_path, local_config(tmp_path, database_url=url))
    result = run_cli("check-config", "--config", str(path))
    _clear(result, 2, "database_url: unsupported database backend")
    assert "secret" not in result.stderr


@pytest.mark.parametrize("command", ["show", "retry", "cancel"])
@pytest.mark.parametrize("case_id", ["99999999999999999999999", "0", "-1", "abc", "1.5", ""])
def test_case_ids_that_cannot_exist(config_file: Path, command: str, case_id: str) -> None:
    # After "--" a leading '-' is an argument, not an option.
    result = run_cli("cases", command, "--config", str(config_file), "--", case_id)
    _clear(result, 2, "CASE_ID")
    assert result.stdout == ""


def test_a_case_id_that_does_not_exist(config_file: Path) -> None:
    result = run_cli("cases", "show", str(2**63 - 1), "--config", str(config_file))
    _clear(result, 1, f"no case with id {2**63 - 1}")


def test_config_files_that_cannot_be_read(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(256)) * 8)
    _clear(run_cli("check-config", "--config", str(garbage)), 2, "not a UTF-8 text file")
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"watch_dir: [\x00\x01")
    _clear(run_cli("status", "--config", str(nul)), 2, "nul.yaml", "not valid YAML")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    _clear(run_cli("check-config", "--config", str(folder)), 2, "is a directory")
    _clear(run_cli("status", env={"MQI_CONFIG": str(folder)}), 2, "(from MQI_CONFIG) is a folder")


def test_a_read_only_database_file_and_folder(tmp_path: Path, immutable: list[Path]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    cfg = local_config(tmp_path, database_url=f"sqlite:///{ro / 'mqi.db'}")
    path = write_config(tmp_path, cfg)
    upgrade(cfg["database_url"])
    (tmp_path / "watch" / "case 1").mkdir()
    (tmp_path / "watch" / "case 1" / "plan.dcm").write_bytes(b"DICM")
    _chattr(immutable, ro)  # no lock file, no -wal file can be created in it
    result = run_cli("run", "--once", "--config", str(path))
    _clear(result, 1, "error: ", str(ro))
    subprocess.run(["chattr", "-i", str(ro)], check=True)
    _chattr(immutable, ro / "mqi.db")  # the file alone: readable, not writable
    result = run_cli("db", "downgrade", "--db", cfg["database_url"], "base", "--yes")
    _clear(result, 1, "readonly database", str(ro / "mqi.db"))
    assert run_cli("db", "current", "--db", cfg["database_url"]).stdout.strip() == (
        f"{head()} (head)"
    )


def test_a_database_folder_that_does_not_exist(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'mqi.db'}"
    _clear(run_cli("db", "current", "--db", url), 1, "unable to open database file")
    assert not (tmp_path / "no").exists()
