"""The transports' abort hook: a set event stops an upload or download mid-stream.

Both transports (local, and ssh to the loopback sshd) must stop within a few chunks,
raise ``TransferAborted``, and leave nothing at the destination: no half-moved tree,
no local partial copy; the far side's partial of an ssh upload is removed by the far
side itself (EOF without the manifest trailer).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqi_communicator.errors import TransferAborted
from mqi_communicator.remote.protocol import Transport
from mqi_communicator.remote.transport.local import LocalTransport
from tests.infra.sshd import SshServer, make_ssh_transport

#: 32 files of 1 MiB: many chunks, so an abort lands mid-stream.
FILES, SIZE = 32, 1 << 20


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "local":
        yield LocalTransport("local")
        return
    server: SshServer = request.getfixturevalue("sshd")
    server.start()
    t = make_ssh_transport(server)
    try:
        yield t
    finally:
        t.close()


def _tree(root: Path) -> Path:
    for i in range(FILES):
        (root / f"f{i:02d}.bin").parent.mkdir(parents=True, exist_ok=True)
        (root / f"f{i:02d}.bin").write_bytes(os.urandom(SIZE))
    return root


def _abort_after_first_progress(
    abort: threading.Event,
) -> tuple[list[int], Callable[[int, int], None]]:
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done > 0:
            abort.set()

    return seen, progress


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(name))


def _eventually_gone(parent: Path, name: str, limit_s: float = 10.0) -> list[str]:
    deadline = time.monotonic() + limit_s
    while (left := _leftovers(parent, name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_upload_aborted_mid_stream_leaves_nothing(transport: Transport, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    far = tmp_path / "far"
    far.mkdir()
    abort = threading.Event()
    seen, progress = _abort_after_first_progress(abort)
    with pytest.raises(TransferAborted):
        transport.upload_tree(src, str(far / "case"), progress=progress, abort=abort)
    total = FILES * SIZE
    assert max(seen) < total // 2, "the stream went on long after the abort"
    assert not (far / "case").exists()
    assert _eventually_gone(far, "case") == []  # the far side removed its partial


def test_download_aborted_mid_stream_leaves_nothing(transport: Transport, tmp_path: Path) -> None:
    far = _tree(tmp_path / "far" / "out")
    home = tmp_path / "home"
    home.mkdir()
    abort = threading.Event()
    seen, progress = _abort_after_first_progress(abort)
    with pytest.raises(TransferAborted):
        transport.download_tree(str(far), home / "res", progress=progress, abort=abort)
    assert max(seen) < FILES * SIZE // 2
    assert _leftovers(home, "res") == []  # no result, no local partial


def test_a_set_abort_sends_nothing(transport: Transport, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    abort = threading.Event()
    abort.set()
    with pytest.raises(TransferAborted):
        transport.upload_tree(src, str(tmp_path / "case"), abort=abort)
    assert _eventually_gone(tmp_path, "case") == []
