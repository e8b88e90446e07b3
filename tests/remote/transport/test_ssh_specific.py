"""SshTransport behaviour the local transport has no counterpart for, on a real sshd."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_communicator.errors import (
    ConfigError,
    HostKeyError,
    HostUnreachableError,
    TransferError,
)
from mqi_communicator.remote.transport.ssh import SshTransport
from tests.infra.sshd import SshServer, make_ssh_transport
from tests.infra.tmpfs import small_tmpfs

pytestmark = pytest.mark.ssh


@pytest.fixture
def server(sshd: SshServer) -> Iterator[SshServer]:
    """The session sshd, running before and after the test (tests may stop it)."""
    sshd.start()
    yield sshd
    sshd.start()


def sha_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def partials(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name] if parent.exists() else []


# ---------------------------------------------------------------- host keys


def test_unknown_host_key_is_refused(server: SshServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    t = make_ssh_transport(server, known_hosts=known)
    with pytest.raises(HostKeyError) as err:
        t.run(["true"], timeout=30)
    msg = str(err.value)
    assert "unknown" in msg and "127.0.0.1" in msg and str(server.port) in msg and str(known) in msg
    assert known.read_text() == ""
    # A missing known_hosts file is just as unknown.
    t2 = make_ssh_transport(server, known_hosts=tmp_path / "missing")
    with pytest.raises(HostKeyError, match="unknown"):
        t2.run(["true"], timeout=30)
    assert not (tmp_path / "missing").exists()


def _other_key_line(tmp_path: Path, port: int) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
    )
    return (
        f"[127.0.0.1]:{port} " + " ".join((tmp_path / "other.pub").read_text().split()[:2]) + "\n"
    )


@pytest.mark.parametrize("accept_new", [False, True])
def test_changed_host_key_is_refused_even_with_accept_new(
    server: SshServer, tmp_path: Path, accept_new: bool
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(_other_key_line(tmp_path, server.port))
    before = known.read_text()
    t = make_ssh_transport(server, known_hosts=known, accept_new_host_key=accept_new)
    with pytest.raises(HostKeyError, match="CHANGED") as err:
        t.run(["true"], timeout=30)
    assert str(known) in str(err.value)
    assert known.read_text() == before


def test_accept_new_host_key_warns_and_records_it(
    server: SshServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    t = make_ssh_transport(server, known_hosts=known, accept_new_host_key=True)
    with caplog.at_level(logging.WARNING):
        assert t.run(["echo", "hi"], timeout=30).stdout == "hi\n"
    t.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("NEW host key" in r.getMessage() for r in warnings)
    assert f"[127.0.0.1]:{server.port} ssh-ed25519 " in known.read_text()
    # The recorded key now satisfies strict checking.
    strict = make_ssh_transport(server, known_hosts=known)
    assert strict.run(["true"], timeout=30).exit_code == 0
    strict.close()


def test_auth_failure_is_a_config_error(server: SshServer, tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "wrong")], check=True
    )
    t = make_ssh_transport(server, key_filename=tmp_path / "wrong")
    with pytest.raises(ConfigError, match="authentication failed"):
        t.run(["true"], timeout=30)


def test_connection_refused_is_host_unreachable(server: SshServer) -> None:
    t = make_ssh_transport(server, port=1)  # nothing listens on port 1
    with pytest.raises(HostUnreachableError, match="cannot connect"):
        t.run(["true"], timeout=30)


# ---------------------------------------------------------------- connection lifetime


def test_one_connection_is_reused_for_every_call(ssh_transport: SshTransport) -> None:
    seen = {ssh_transport.run('echo "$SSH_CONNECTION"', timeout=30).stdout for _ in range(15)}
    assert len(seen) == 1
    client_port = seen.pop().split()[1]
    tree = Path(ssh_transport.run(["mktemp", "-d"], timeout=30).stdout.strip())
    try:
        (tree / "src").mkdir()
        (tree / "src" / "f").write_bytes(b"x" * 1000)
        ssh_transport.download_tree(str(tree / "src"), tree / "copy")
        again = ssh_transport.run('echo "$SSH_CONNECTION"', timeout=30).stdout
        assert again.split()[1] == client_port
    finally:
        shutil.rmtree(tree)


def test_reconnects_after_sshd_restart(server: SshServer) -> None:
    t = make_ssh_transport(server)
    try:
        first = t.run('echo "$SSH_CONNECTION"', timeout=30).stdout
        server.stop()
        with pytest.raises(HostUnreachableError):
            t.run(["true"], timeout=30)
        server.start()
        second = t.run('echo "$SSH_CONNECTION"', timeout=30).stdout
        assert second.split()[1] != first.split()[1]  # a new TCP connection
    finally:
        t.close()


def test_command_cut_by_a_drop_raises_and_is_not_retried(server: SshServer, tmp_path: Path) -> None:
    t = make_ssh_transport(server)
    counter = tmp_path / "count"
    try:
        t.run(["true"], timeout=30)
        dropper = threading.Timer(1.0, server.drop_connections)
        dropper.start()
        with pytest.raises(HostUnreachableError):
            t.run(f"echo x >> {counter}; sleep 5", timeout=30)
        dropper.join()
        assert counter.read_text() == "x\n"  # ran once, never silently re-run
        assert t.run(["echo", "back"], timeout=30).stdout == "back\n"
    finally:
        t.close()


# ---------------------------------------------------------------- transfers under failure


def _large_case(root: Path) -> Path:
    (root / "CT").mkdir(parents=True)
    for i in range(40):
        (root / "CT" / f"s{i:03d}.dcm").write_bytes(os.urandom(300_000))
    for i in range(8):
        (root / f"dose{i}.bin").write_bytes(os.urandom(24_000_000))
    return root


@pytest.mark.slow
def test_drop_mid_upload_leaves_nothing_and_recovers(server: SshServer, tmp_path: Path) -> None:
    src = _large_case(tmp_path / "case")
    before = sha_tree(src)
    dest = server.workdir / f"drop_{os.getpid()}" / "mqic_case_1_a1"
    t = make_ssh_transport(server)
    fired = threading.Event()

    def progress(done: int, total: int) -> None:
        if done > 0.3 * total and not fired.is_set():
            fired.set()
            threading.Thread(target=server.drop_connections).start()

    try:
        with pytest.raises(HostUnreachableError, match=r"dropped|failed"):
            t.upload_tree(src, str(dest), progress=progress)
        assert fired.is_set()
        assert not dest.exists()
        assert sha_tree(src) == before  # local source intact
        server.start()  # no-op when only the sessions were dropped
        report = t.upload_tree(src, str(dest))  # same transport object
        assert report.files == len(before)
        assert sha_tree(dest) == before
        assert partials(dest.parent) == []  # the interrupted partial dir is gone too
    finally:
        t.close()
        shutil.rmtree(dest.parent, ignore_errors=True)


def test_full_remote_disk_is_a_transfer_error(ssh_transport: SshTransport, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small") as mnt:
        src = tmp_path / "case"
        src.mkdir()
        for i in range(4):
            (src / f"f{i}").write_bytes(os.urandom(700_000))
        dest = mnt / "case"
        with pytest.raises(TransferError, match="No space left"):
            ssh_transport.upload_tree(src, str(dest))
        assert not dest.exists()
        assert list(mnt.iterdir()) == []


def test_transfer_uses_aes128_gcm(ssh_transport: SshTransport) -> None:
    ssh_transport.run(["true"], timeout=30)
    conn = ssh_transport._conn  # white-box: the negotiated cipher is not public API
    assert conn is not None and conn.transport is not None
    assert conn.transport.remote_cipher == "aes128-gcm@openssh.com"


def test_round_trip_without_python3_on_the_far_side(
    server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coreutils sha256sum fallback verifies the same odd names."""
    from tests.remote.transport.test_transport_contract import change_after_hashing, make_case

    t = make_ssh_transport(server, env={"MQI_REMOTE_NO_PYTHON": "1"})
    try:
        src = make_case(tmp_path / "case")
        dest = tmp_path / "remote" / "case"
        up = t.upload_tree(src, str(dest))
        assert sha_tree(dest) == sha_tree(src)
        down = t.download_tree(str(dest), tmp_path / "back")
        assert down.manifest_sha256 == up.manifest_sha256
        assert sha_tree(tmp_path / "back") == sha_tree(src)
        # The fallback really verifies: a file changed after hashing is caught.
        hashed = change_after_hashing(monkeypatch, src / "zero")
        with pytest.raises(TransferError, match="verification failed"):
            t.upload_tree(src, str(tmp_path / "remote" / "case2"))
        assert hashed.is_set()
        assert not (tmp_path / "remote" / "case2").exists()
        assert partials(tmp_path / "remote") == []
    finally:
        t.close()


def test_remove_tree_over_real_sshd(ssh_transport: SshTransport, tmp_path: Path) -> None:
    """remote_retention's removal: the tree goes, a missing one is fine, `/` is refused."""
    target = tmp_path / "mqic_case_1_a1"
    (target / "output").mkdir(parents=True)
    (target / "output" / "dose.bin").write_bytes(b"x" * 1000)
    (tmp_path / "mqic_case_1_a1.mqi").mkdir()
    (tmp_path / "keep").mkdir()
    ssh_transport.remove_tree(str(target), timeout=30)
    ssh_transport.remove_tree(f"{target}.mqi", timeout=30)
    assert not target.exists() and not (tmp_path / "mqic_case_1_a1.mqi").exists()
    assert (tmp_path / "keep").exists()
    ssh_transport.remove_tree(str(target), timeout=30)  # already gone: fine
    for bad in ("/", "relative/dir", "/tmp/../etc", "/tmp"):
        with pytest.raises(ValueError):
            ssh_transport.remove_tree(bad, timeout=30)
