"""Start and stop the Pueue stand-in daemon (tests/standins/pueue) in a temp dir.

Not a pytest plugin: import :func:`pueue_daemon` (a context manager) or the fixtures
from test modules / ``tests/remote/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

STANDIN_DIR = Path(__file__).resolve().parents[1] / "standins" / "pueue"
PUEUE = STANDIN_DIR / "pueue"
PUEUED = STANDIN_DIR / "pueued"


class PueueStandin:
    """One stand-in daemon with its own state dir (short path: Unix sockets cap at 108)."""

    def __init__(self, version: int, directory: Path | None = None) -> None:
        self.version = version
        self.dir = directory or Path(tempfile.mkdtemp(prefix="mqi-pq-"))
        self.config = self.dir / "pueue.yml"
        self.config.write_text(f"standin_version: {version}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        """The argv prefix that reaches this daemon (works over SSH: no env needed).

        The interpreter is named explicitly: over SSH, ``#!/usr/bin/env python3`` would go
        through the login shell's pyenv shims here, adding ~1 s to every call.
        """
        return [sys.executable, str(PUEUE), "-c", str(self.config)]

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args], capture_output=True, text=True, timeout=30, check=check
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PUEUED), "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "daemon.log").open("ab"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while self.cli("status", "--json").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stand-in pueued did not start: {self.dir / 'daemon.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Graceful shutdown (pueued kills its tasks)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        self.proc = None

    def crash(self) -> None:
        """kill -9 the daemon: its tasks keep running, orphaned."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def wait_for_status(self, task_id: int, predicate, timeout: float = 15.0) -> object:  # type: ignore[no-untyped-def]
        import json

        deadline = time.monotonic() + timeout
        while True:
            status = json.loads(self.cli("status", "--json", check=True).stdout)["tasks"]
            task = status.get(str(task_id))
            if predicate(task) or time.monotonic() > deadline:
                return task
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Stop the daemon and SIGKILL every task group it ever spawned; remove the dir."""
        with contextlib.suppress(Exception):
            self.stop()
        if self.proc is not None:
            self.proc.kill()
        spawned = self.dir / "spawned_pgids"
        if spawned.exists():
            for line in spawned.read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.killpg(int(line), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def pueue_daemon(version: int) -> Iterator[PueueStandin]:
    """A running stand-in daemon of the given Pueue major version (3 or 4)."""
    standin = PueueStandin(version)
    try:
        standin.start()
        yield standin
    finally:
        standin.cleanup()
