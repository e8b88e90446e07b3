"""A :class:`~mqi_communicator.remote.protocol.Transport` for the control PC itself.

Used for the local scheduler and in tests. It keeps the SSH transport's contract:

* ``run``: a sequence runs as an argv (no shell); a str runs through ``/bin/sh -c``
  (``cmd /c`` on Windows). A missing program gives exit code 127 like a shell would.
  A call exceeding ``timeout`` kills the command and raises ``HostUnreachableError``
  (same as SSH, so the engine treats a hung local call like a hung remote one).
* ``upload_tree`` / ``download_tree``: copy into a temp sibling
  ``<dest>.partial-<random>``, verify the sha256 manifest of the copy against the
  source's, then rename into place. A failure removes the partial copy and never
  leaves anything at ``dest``. An existing ``dest`` raises ``RemoteCommandError``
  (permanent: the engine must pick a fresh directory). The source is only read.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from mqi_communicator.errors import (
    HostUnreachableError,
    RemoteCommandError,
    RemoteSourceMissingError,
    TransferError,
)
from mqi_communicator.remote.protocol import CommandResult, ProgressCallback, TransferReport
from mqi_communicator.remote.transfer.abort import check_abort
from mqi_communicator.remote.transfer.manifest import manifest_of_files
from mqi_communicator.remote.transfer.tarstream import CHUNK, CaseTree, enumerate_tree

__all__ = ["LocalTransport"]


class LocalTransport:
    """Runs commands and copies trees on this machine.

    Args:
        host_name: Name used in logs and errors.
        env: Extra environment variables for every command.
    """

    def __init__(self, host_name: str = "local", env: Mapping[str, str] | None = None) -> None:
        self._host_name = host_name
        self._env = dict(env or {})

    @property
    def host_name(self) -> str:
        """The configured host name."""
        return self._host_name

    def run(
        self,
        command: Sequence[str] | str,
        *,
        timeout: float,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run ``command`` locally; see the module docstring for the rules."""
        env = {**os.environ, **self._env}
        argv: Sequence[str] | str
        if isinstance(command, str):
            argv = ["cmd", "/c", command] if os.name == "nt" else ["/bin/sh", "-c", command]
        else:
            if not command:
                raise ValueError("empty command")
            argv = list(command)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=os.name == "posix",  # so a timeout kills the whole group
            )
        except FileNotFoundError as err:
            return CommandResult(127, "", f"{argv[0]}: command not found ({err})\n")
        except OSError as err:
            return CommandResult(126, "", f"{argv[0]}: cannot execute ({err})\n")
        try:
            out, err_b = proc.communicate(stdin or b"", timeout=timeout)
        except subprocess.TimeoutExpired as err:
            self._kill(proc)
            raise HostUnreachableError(
                f"{self._host_name}: command exceeded its {timeout:g} s timeout: {argv!r}"
            ) from err
        return CommandResult(
            proc.returncode,
            out.decode("utf-8", errors="replace"),
            err_b.decode("utf-8", errors="replace"),
        )

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if os.name == "posix":
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # POSIX only; guarded above
        proc.kill()
        proc.communicate()

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
        """Copy ``local_dir`` to ``remote_dir`` (a local path here), verified and atomic.

        ``exclude``: relative paths never copied (``tarstream.enumerate_tree``).
        ``abort``: checked between chunks; the partial copy is removed.
        """
        tree = enumerate_tree(local_dir, exclude=exclude)
        return self._copy_verified(tree, Path(remote_dir), progress, timeout, abort)

    def download_tree(
        self,
        remote_dir: str,
        local_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
        abort: threading.Event | None = None,
    ) -> TransferReport:
        """Copy ``remote_dir`` (a local path here) to ``local_dir``, verified and atomic."""
        src = Path(remote_dir)
        if not src.is_dir():
            raise RemoteSourceMissingError(f"{self._host_name}: {remote_dir} is not a directory")
        tree = enumerate_tree(src, allow_empty=True)
        return self._copy_verified(tree, local_dir, progress, timeout, abort)

    def remove_tree(self, remote_dir: str, *, timeout: float = 600.0) -> None:
        """Delete ``remote_dir`` (a local path here) and its content; missing is fine."""
        path = Path(remote_dir)
        # The same rule as check_removable, in this machine's path syntax (Windows too).
        if not path.is_absolute() or len(path.parts) < 3 or ".." in path.parts:
            raise ValueError(f"refusing to remove {remote_dir!r}: not an absolute case folder")
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
        except OSError as err:
            raise RemoteCommandError(f"{self._host_name}: cannot remove {path}: {err}") from err

    def close(self) -> None:
        """Nothing to release."""

    def _copy_verified(
        self,
        tree: CaseTree,
        dest: Path,
        progress: ProgressCallback | None,
        timeout: float,
        abort: threading.Event | None,
    ) -> TransferReport:
        started = time.monotonic()
        deadline = started + timeout
        if dest.exists() or dest.is_symlink():
            raise RemoteCommandError(f"{self._host_name}: destination {dest} already exists")
        expected = manifest_of_files((f.rel, f.path) for f in tree.files)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f"{dest.name}.partial-{secrets.token_hex(4)}")
        total = tree.total_bytes
        done = 0
        try:
            partial.mkdir()
            for d in tree.dirs:
                (partial / d).mkdir(parents=True, exist_ok=True)
            for f in tree.files:
                target = partial / f.rel
                with f.path.open("rb") as src, target.open("wb") as out:
                    while chunk := src.read(CHUNK):
                        check_abort(abort, f"{self._host_name}: copy to {dest}")
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(min(done, total), total)
                        if time.monotonic() > deadline:
                            raise HostUnreachableError(
                                f"{self._host_name}: copy exceeded its {timeout:g} s timeout"
                            )
                shutil.copymode(f.path, target)
            got = manifest_of_files((f.rel, partial / f.rel) for f in tree.files)
            diff = got.differences(expected.digests())
            if diff:
                raise TransferError(
                    f"{self._host_name}: copy of {tree.root} did not verify: {diff[:5]}"
                )
            if dest.exists() or dest.is_symlink():
                raise RemoteCommandError(f"{self._host_name}: destination {dest} already exists")
            partial.rename(dest)
        except OSError as err:
            raise TransferError(f"{self._host_name}: copy to {dest} failed: {err}") from err
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
        if progress is not None:
            progress(total, total)
        return expected.report(time.monotonic() - started, tree.excluded)
