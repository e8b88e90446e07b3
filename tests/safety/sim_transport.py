"""The ``Transport`` protocol over :class:`~.sim_world.SimWorld`: real files in a tmp dir.

Uploads copy the case folder as it is (a ``.mqi/`` the case carries included), downloads
copy results home, and ``run`` understands one command: the start revoke of
``markers.revoke_snippet``.
"""

from __future__ import annotations

import shlex
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from mqi_communicator.errors import RemoteCommandError, TransferError
from mqi_communicator.remote.protocol import CommandResult, ProgressCallback, TransferReport
from mqi_communicator.remote.transfer.tarstream import is_excluded

from .sim_world import SimWorld

__all__ = ["SimTransport"]


class SimTransport:
    """The ``Transport`` protocol: real files under the world's remote root."""

    host_name = "sim"

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    def _remote(self, remote_dir: str) -> Path:
        return self.world.remote_root / remote_dir.lstrip("/")

    def run(
        self, command: Sequence[str] | str, *, timeout: float, stdin: bytes | None = None
    ) -> CommandResult:
        """The start revoke of ``markers.revoke_snippet``; anything else does nothing."""
        self.world._enter()
        target = _revoked_dir(command)
        if target is not None and not self.world.revoke(target):
            return CommandResult(1, "", "")  # the wrapper's claim is there
        self.world._leave()
        return CommandResult(0, "", "")

    def upload_tree(
        self,
        local_dir: Path,
        remote_dir: str,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
        exclude: Sequence[str] = (),
        abort: threading.Event | None = None,
    ) -> TransferReport:
        """Copy the case, minus ``exclude`` (the real transports' rule); all or nothing."""
        self.world._enter()
        if not self.world.upload_ok:
            raise TransferError("sim: upload interrupted")
        target = self._remote(remote_dir)
        if target.exists():
            raise RemoteCommandError(f"sim: {remote_dir} exists", exit_code=1)

        def ignore(folder: str, names: list[str]) -> set[str]:
            rel = Path(folder).relative_to(local_dir).as_posix()
            prefix = "" if rel == "." else rel + "/"
            return {n for n in names if is_excluded(prefix + n, exclude)}

        shutil.copytree(local_dir, target, ignore=ignore)
        self.world._leave()
        return _report(target)

    def download_tree(
        self,
        remote_dir: str,
        local_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
        abort: threading.Event | None = None,
    ) -> TransferReport:
        """Copy results home; all or nothing."""
        self.world._enter()
        if not self.world.download_ok:
            raise TransferError("sim: download interrupted")
        source = self._remote(remote_dir)
        if not source.is_dir():
            raise RemoteCommandError(f"sim: no such directory {remote_dir}", exit_code=2)
        if local_dir.exists():
            raise TransferError(f"sim: {local_dir} exists")
        shutil.copytree(source, local_dir)
        self.world._leave()
        return _report(local_dir)

    def close(self) -> None:
        """Nothing to release."""


def _revoked_dir(command: Sequence[str] | str) -> str | None:
    """The case directory ``command`` revokes, if it is ``markers.revoke_snippet``'s text."""
    if not isinstance(command, str):
        return None
    words = shlex.split(command)
    if words[:2] != ["mkdir", "-p"] or len(words) < 7 or words[5:7] != ["ln", "-s"]:
        return None
    mqi = words[2]
    # <dir>.mqi (attempts with a token) or <dir>/.mqi (claimed before tokens existed)
    return mqi.removesuffix(".mqi").rstrip("/") if mqi.endswith(".mqi") else None


def _report(root: Path) -> TransferReport:
    files = [p for p in root.rglob("*") if p.is_file()]
    return TransferReport(len(files), sum(p.stat().st_size for p in files), "sim", 0.0)
