"""A real OpenSSH sshd on 127.0.0.1 for tests (pytest plugin, see tests/conftest.py).

Fixtures:
    sshd: session-scoped :class:`SshServer` (keys made fresh in a temp dir outside
        the repo; port ``MQI_TEST_SSHD_PORT``, else a free port, so xdist workers and
        parallel sessions never share one). Torn down at the end.
    ssh_transport: a connected :class:`SshTransport` to it, closed after the test.

Use :func:`make_ssh_transport` to build more transports (other known_hosts, env...).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mqi_communicator.remote.transport.ssh import SshTransport
from tests.infra.require import unavailable

__all__ = [
    "SshServer",
    "free_port",
    "make_ssh_transport",
    "ssh_transport",
    "sshd",
    "start_sshd",
]

SSHD_BIN = Path("/usr/sbin/sshd")
UP_SCRIPT = Path(__file__).with_name("sshd_up.sh")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # field 4 (ppid) follows the ")" closing the command name
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def _comm(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return _comm(pid) != "" and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


@dataclass
class SshServer:
    """A running loopback sshd and what a client needs to reach it."""

    host: str
    port: int
    user: str
    key_path: Path
    known_hosts: Path
    workdir: Path
    confdir: Path
    pid: int | None = field(default=None)
    #: sshd runs in a private mount namespace with /tmp read-only (sshd_up.sh readonly-tmp).
    readonly_tmp: bool = False

    @property
    def log_path(self) -> Path:
        """sshd's log file (LogLevel VERBOSE)."""
        return self.confdir / "sshd.log"

    def start(self) -> None:
        """Start sshd (again) on the same port with the same keys."""
        if self.pid is not None and _alive(self.pid):
            return
        mode = ["readonly-tmp"] if self.readonly_tmp else []
        proc = subprocess.run(
            ["bash", str(UP_SCRIPT), str(self.confdir), str(self.port), *mode],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"sshd_up.sh failed ({proc.returncode}): {proc.stderr}")
        self.pid = int((self.confdir / "sshd.pid").read_text().split()[0])

    def session_pids(self) -> list[int]:
        """Per-connection sshd processes (all descendants of the listener named sshd)."""
        if self.pid is None:
            return []
        found: list[int] = []
        todo = [self.pid]
        while todo:
            for kid in _children(todo.pop()):
                todo.append(kid)
                if _comm(kid) == "sshd":
                    found.append(kid)
        return found

    def drop_connections(self) -> None:
        """Kill every per-connection sshd process: all sessions drop at once.

        The commands they ran are left alone (like a network drop): they see EOF on
        stdin and broken pipes, as they would on a real server.
        """
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the listener and drop every connection."""
        if self.pid is None:
            return
        self.drop_connections()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        for _ in range(200):
            if not _alive(self.pid):
                break
            time.sleep(0.02)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.drop_connections()
        self.pid = None

    def transport(self, **overrides: Any) -> SshTransport:
        """A new (not yet connected) transport to this server."""
        return make_ssh_transport(self, **overrides)


def make_ssh_transport(server: SshServer, **overrides: Any) -> SshTransport:
    """Build an :class:`SshTransport` for ``server``; keyword arguments override defaults."""
    kwargs: dict[str, Any] = {
        "port": server.port,
        "user": server.user,
        "key_filename": server.key_path,
        "known_hosts": server.known_hosts,
        "connect_timeout": 5.0,
    }
    kwargs.update(overrides)
    host_name = kwargs.pop("host_name", "test-sshd")
    hostname = kwargs.pop("hostname", server.host)
    return SshTransport(host_name, hostname, **kwargs)


def start_sshd(base: Path, port: int, *, readonly_tmp: bool = False) -> SshServer:
    """Start an sshd with fresh keys under ``base`` (outside the repo).

    With ``readonly_tmp`` its sessions see /tmp read-only (``base`` must be outside /tmp).
    """
    confdir = base / "conf"
    workdir = base / "remote"
    workdir.mkdir(parents=True, exist_ok=True)
    server = SshServer(
        host="127.0.0.1",
        port=port,
        user="root",
        key_path=confdir / "id_ed25519",
        known_hosts=confdir / "known_hosts",
        workdir=workdir,
        confdir=confdir,
        readonly_tmp=readonly_tmp,
    )
    server.start()
    return server


def _choose_port() -> int:
    """``MQI_TEST_SSHD_PORT`` if set, else a free port: xdist workers and parallel test
    sessions each start their own sshd, and a fixed default port made them race."""
    if "MQI_TEST_SSHD_PORT" in os.environ:
        return int(os.environ["MQI_TEST_SSHD_PORT"])
    return free_port()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """A loopback OpenSSH server for the whole test session."""
    if not SSHD_BIN.exists():
        unavailable("sshd", f"{SSHD_BIN} is missing (apt-get install openssh-server)")
    if shutil.which("ssh-keygen") is None:
        unavailable("sshd", "ssh-keygen is missing (apt-get install openssh-client)")
    base = Path(tempfile.mkdtemp(prefix="mqi-sshd-"))
    for attempt in range(3):
        # A free port can still be taken between the probe and sshd's bind: try another.
        port = _choose_port()
        try:
            server = start_sshd(base, port)
            break
        except (RuntimeError, subprocess.SubprocessError, OSError) as err:
            if attempt < 2 and "already in use" in str(err):
                continue
            shutil.rmtree(base, ignore_errors=True)
            unavailable("sshd", f"could not start sshd on port {port}: {err}")
            raise  # unreachable: unavailable() skips or fails
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ssh_transport(sshd: SshServer) -> Iterator[SshTransport]:
    """A connected transport to :func:`sshd` (restarting sshd if a test stopped it)."""
    sshd.start()
    transport = make_ssh_transport(sshd)
    transport.run(["true"], timeout=30)
    try:
        yield transport
    finally:
        transport.close()
