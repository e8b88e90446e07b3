"""Which upload protocol SshTransport picks, and the one-command protocol's failure paths.

With python3 on the far side an upload is ONE remote command (receive, hash, verify,
rename); without it, two (``tar -x``, then ``sha256sum -c`` and rename). The probe for
python3 runs once per connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mqi_communicator.remote.transfer.ssh_upload as ssh_upload_mod
import mqi_communicator.remote.transport.ssh as ssh_transport_mod
from mqi_communicator.errors import CaseContentError
from mqi_communicator.remote.transfer.far_side_scripts import PYTHON_PROBE
from tests.infra.sshd import SshServer, make_ssh_transport
from tests.remote.transport.test_transport_contract import make_case, no_partials, sha_tree

pytestmark = pytest.mark.ssh


def _spy(monkeypatch: pytest.MonkeyPatch, module: object, name: str, calls: list[str]) -> None:
    real: Callable[..., Any] = getattr(module, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


@pytest.mark.parametrize(("env", "commands"), [({}, 1), ({"MQI_REMOTE_NO_PYTHON": "1"}, 2)])
def test_upload_is_one_command_with_far_side_python_and_two_without(
    sshd: SshServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    commands: int,
) -> None:
    sshd.start()
    t = make_ssh_transport(sshd, env=env)
    calls: list[str] = []
    _spy(monkeypatch, ssh_upload_mod, "open_command", calls)
    _spy(monkeypatch, ssh_upload_mod, "exec_command", calls)
    try:
        src = make_case(tmp_path / "case")
        t.run(["true"], timeout=30)
        t.upload_tree(src, str(tmp_path / "remote" / "case"))
        assert len(calls) == commands, calls
        assert sha_tree(tmp_path / "remote" / "case") == sha_tree(src)
    finally:
        t.close()


def test_python_probe_runs_once_per_connection(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sshd.start()
    probes: list[str] = []
    real = ssh_transport_mod.exec_command

    def spy(transport: Any, command: str, **kwargs: Any) -> Any:
        if "MQI_REMOTE_NO_PYTHON" in command and command.strip() == PYTHON_PROBE.strip():
            probes.append(command)
        return real(transport, command, **kwargs)

    monkeypatch.setattr(ssh_transport_mod, "exec_command", spy)
    t = make_ssh_transport(sshd)
    try:
        src = make_case(tmp_path / "case")
        for i in range(3):
            t.upload_tree(src, str(tmp_path / "remote" / f"c{i}"))
        assert len(probes) == 1
        sshd.drop_connections()
        conn = t._conn  # white-box: wait until paramiko has noticed the drop
        deadline = time.monotonic() + 10
        while conn is not None and conn.is_connected and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(3, 5):
            t.upload_tree(src, str(tmp_path / "remote" / f"c{i}"))
        assert len(probes) == 2  # a new connection may be a different machine behind the name
    finally:
        t.close()
        sshd.start()


def test_sender_giving_up_after_the_archive_leaves_nothing(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local hashing fails once the archive has gone: the far side never gets the
    trailer, so it refuses the upload and removes the partial directory itself."""
    sshd.start()

    def failing_hash(*args: object, **kwargs: object) -> object:
        time.sleep(0.5)  # let the whole archive go first
        raise OSError("simulated read error")

    monkeypatch.setattr(ssh_upload_mod, "manifest_of_files", failing_hash)
    t = make_ssh_transport(sshd)
    remote = tmp_path / "remote"
    try:
        with pytest.raises(CaseContentError, match="simulated read error"):
            t.upload_tree(make_case(tmp_path / "case"), str(remote / "case"))
        deadline = time.monotonic() + 10
        while not no_partials(remote) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert no_partials(remote)
        assert not (remote / "case").exists()
    finally:
        t.close()
