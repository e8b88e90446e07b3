"""A second real sshd whose sessions see /tmp read-only (pytest plugin, see tests/conftest.py).

It stands for a GPU server whose /tmp is full or read-only, where a probe that needs a
scratch file cannot tell whether a job lives. sshd runs in a private mount namespace
(``unshare --mount --propagation private``) in which /tmp is a read-only bind mount of
itself (``tests/infra/sshd_up.sh ... readonly-tmp``); every session and every process
started over it (jobs included) inherits that namespace. The host's own /tmp stays
writable. Keys, pid file, log and ``workdir`` (where tests put remote case directories)
live outside /tmp: under /var/tmp, else under the home directory (writable in the
namespace too).

Fixtures:
    readonly_tmp_sshd: session-scoped :class:`~tests.infra.sshd.SshServer` (free port).
    readonly_tmp_transport: a connected ``SshTransport`` to it, closed after the test.

Use :func:`tests.infra.sshd.make_ssh_transport` to build more transports. When the
namespace or the mount cannot be made (not root, no ``unshare``, a seccomp/container
policy refusing ``unshare(CLONE_NEWNS)``), the tests skip with sshd_up.sh's reason, or
fail under ``CI=true`` / ``MQI_REQUIRE_SSHD_READONLY_TMP=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_communicator.remote.transport.ssh import SshTransport
from tests.infra.require import unavailable
from tests.infra.sshd import SSHD_BIN, SshServer, free_port, make_ssh_transport, start_sshd

__all__ = ["readonly_tmp_sshd", "readonly_tmp_transport"]

SERVICE = "sshd_readonly_tmp"


def _base_outside_tmp() -> Path | None:
    """A fresh directory outside /tmp (the namespace's /tmp cannot be written)."""
    for parent in (Path("/var/tmp"), Path.home()):
        real = os.path.realpath(parent)
        if real == "/tmp" or real.startswith("/tmp/") or not os.access(parent, os.W_OK):
            continue
        return Path(tempfile.mkdtemp(prefix="mqi-rotmp-sshd-", dir=parent))
    return None


@pytest.fixture(scope="session")
def readonly_tmp_sshd() -> Iterator[SshServer]:
    """A loopback sshd whose sessions see /tmp read-only, for the whole test session."""
    for tool, package in ((str(SSHD_BIN), "openssh-server"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            unavailable(SERVICE, f"{tool} is missing (apt-get install {package})")
    base = _base_outside_tmp()
    if base is None:
        unavailable(SERVICE, "no writable directory outside /tmp (/var/tmp, home)")
        raise AssertionError("unreachable: unavailable() skips or fails")
    port = free_port()
    try:
        server = start_sshd(base, port, readonly_tmp=True)
    except (RuntimeError, subprocess.SubprocessError, OSError) as err:
        shutil.rmtree(base, ignore_errors=True)
        unavailable(SERVICE, f"could not start sshd with a read-only /tmp on port {port}: {err}")
        raise  # unreachable: unavailable() skips or fails
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def readonly_tmp_transport(readonly_tmp_sshd: SshServer) -> Iterator[SshTransport]:
    """A connected transport to :func:`readonly_tmp_sshd` (restarted if a test stopped it)."""
    readonly_tmp_sshd.start()
    transport = make_ssh_transport(readonly_tmp_sshd, host_name="readonly-tmp-sshd")
    transport.run(["true"], timeout=30)
    try:
        yield transport
    finally:
        transport.close()
