"""One engine per SQLite file whatever name reaches it; ``db downgrade`` waits for no engine."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from mqi_communicator.dblock import (
    EngineLockedError,
    engine_lock,
    schema_change_lock,
    sqlite_lock_path,
)
from mqi_communicator.migrations.api import current, head, upgrade
from tests.migrations.cli_run import console_script, run_cli

from .conftest import local_config, write_config

BOUND_S = 60.0  # an upper bound for waiting, not a speed assertion


def _wait_for(what: str, check: Callable[[], bool]) -> None:
    end = time.monotonic() + BOUND_S
    while not check():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """An upgraded SQLite database in ``tmp_path/data``."""
    path = tmp_path / "data" / "mqi.db"
    path.parent.mkdir()
    upgrade(f"sqlite:///{path}")
    return path


def test_two_engine_processes_through_a_symlink(tmp_path: Path, db: Path) -> None:
    (tmp_path / "alias.db").symlink_to(db)  # another name, in another folder
    direct = write_config(tmp_path, local_config(tmp_path, database_url=f"sqlite:///{db}"))
    aliased = tmp_path / "aliased.yaml"
    cfg = local_config(tmp_path, database_url=f"sqlite:///{tmp_path / 'alias.db'}")
    aliased.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    lock_file = db.with_name("mqi.db.lock")
    first = subprocess.Popen(
        [console_script(), "run", "--quiet", "--config", str(direct)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The holder writes its pid into the lock file once it holds the lock.
        _wait_for("the first engine's lock", lambda: str(first.pid) in _text(lock_file))
        second = run_cli("run", "--once", "--config", str(aliased))
        assert second.returncode == 1, second.stderr
        assert "another engine is already running" in second.stderr
        assert f"pid {first.pid} " in second.stderr and str(lock_file) in second.stderr
        assert not (tmp_path / "alias.db.lock").exists()
    finally:
        first.terminate()
        assert first.wait(timeout=BOUND_S) == 0


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def test_every_name_of_one_file_meets_on_one_lock(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file-link.db").symlink_to(db)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    names = [
        f"sqlite:///{tmp_path / 'file-link.db'}",  # a symlink to the file itself
        f"sqlite:///{tmp_path / 'sub' / '..' / 'data' / 'mqi.db'}",  # '..'
        "sqlite:///../data/mqi.db",  # relative to the current directory
        "../data/mqi.db",  # a bare path
    ]
    holder = engine_lock(f"sqlite:///{db}")
    assert holder is not None
    holder.acquire()
    try:
        for name in names:
            assert sqlite_lock_path(name) == db.with_name("mqi.db.lock"), name
            other = engine_lock(name)
            assert other is not None
            with pytest.raises(EngineLockedError, match="another engine is already running"):
                other.acquire()
    finally:
        holder.release()


def test_a_hard_linked_database_is_refused(tmp_path: Path, db: Path) -> None:
    twin = tmp_path / "twin.db"
    os.link(db, twin)
    for url in (f"sqlite:///{db}", f"sqlite:///{twin}"):
        lock = engine_lock(url)
        assert lock is not None
        with pytest.raises(EngineLockedError, match="has 2 hard links"):
            lock.acquire()
    twin.unlink()
    lock = engine_lock(f"sqlite:///{db}")
    assert lock is not None
    lock.acquire()
    lock.release()


def test_downgrade_is_refused_while_an_engine_holds_the_database(db: Path) -> None:
    url = f"sqlite:///{db}"
    engine = engine_lock(url)
    assert engine is not None
    engine.acquire()
    try:
        refused = run_cli("db", "downgrade", "--db", url, "base", "--yes")
        assert refused.returncode == 1, refused.stderr
        assert "refusing to change the schema while an engine runs" in refused.stderr
        assert f"pid {os.getpid()} " in refused.stderr and "Traceback" not in refused.stderr
        assert current(url) == head()
    finally:
        engine.release()
    # And an engine cannot start while a downgrade holds the database.
    downgrade = schema_change_lock(url)
    assert downgrade is not None
    downgrade.acquire()
    try:
        with pytest.raises(EngineLockedError):
            engine.acquire()
    finally:
        downgrade.release()


def test_downgrade_without_a_terminal_needs_yes(db: Path) -> None:
    url = f"sqlite:///{db}"
    result = run_cli("db", "downgrade", "--db", url, "base")
    assert result.returncode == 2, result.stderr
    assert "pass --yes" in result.stderr and "drops every table" in result.stderr
    assert current(url) == head()
    done = run_cli("db", "downgrade", "--db", url, "base", "--yes")
    assert done.returncode == 0, done.stderr
    assert current(url) is None


def _on_a_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run the console script on a pseudo-terminal; answer its prompt with ``answer``."""
    import pty  # POSIX only; the prompt itself is click's, the same on Windows

    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    end = time.monotonic() + BOUND_S
    answered = False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"[y/N]" in seen:
                os.write(master, answer)
                answered = True
            if proc.poll() is not None and not ready:
                break
            assert time.monotonic() < end, seen
        return proc.wait(timeout=BOUND_S), seen.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_downgrade_on_a_terminal_asks_first(db: Path) -> None:
    url = f"sqlite:///{db}"
    args = [console_script(), "db", "downgrade", "--db", url, "base"]
    code, out = _on_a_terminal(args, b"n\n")
    assert code == 1 and "drops every table" in out, out
    assert current(url) == head()
    code, out = _on_a_terminal(args, b"y\n")
    assert code == 0 and "downgraded from" in out, out
    assert current(url) is None


@pytest.fixture
def pg_engine_lock(pg_url: str) -> Iterator[str]:
    upgrade(pg_url)
    yield pg_url


@pytest.mark.postgres
def test_postgres_downgrade_waits_for_every_engine(pg_engine_lock: str) -> None:
    url = pg_engine_lock
    engines = [engine_lock(url), engine_lock(url)]  # several engines share a database
    for e in engines:
        assert e is not None
        e.acquire()
    try:
        refused = run_cli("db", "downgrade", "--db", url, "base", "--yes")
        assert refused.returncode == 1, refused.stderr
        assert "refusing to change the schema while an engine runs" in refused.stderr
        assert "held by server process(es) " in refused.stderr  # the engines' backend pids
        assert current(url) == head()
    finally:
        for e in engines:
            assert e is not None
            e.release()
    downgrade = schema_change_lock(url)
    assert downgrade is not None
    downgrade.acquire()
    try:
        late = engine_lock(url)
        assert late is not None
        with pytest.raises(EngineLockedError, match="schema change"):
            late.acquire()
    finally:
        downgrade.release()
    done = run_cli("db", "downgrade", "--db", url, "base", "--yes")
    assert done.returncode == 0, done.stderr
    assert current(url) is None
