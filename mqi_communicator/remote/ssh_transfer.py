"""Verified tree downloads, and the helpers both transfer directions share.

Every transfer is ONE tar archive streamed over ONE exec channel (never per-file
SFTP); uploads live in :mod:`~mqi_communicator.remote.ssh_upload`.

Download: two channels run at once on the same connection: one prints
``<total bytes>\\n<tar archive>``, the other hashes the remote tree (its manifest
text), so remote hashing overlaps the transfer. We extract into a temp sibling of
``local_dir``, check every file against the remote manifest (set of paths and
sha256), then rename into place; ``local_dir`` never holds an unverified tree.

The far-side scripts live in :mod:`~mqi_communicator.remote.remote_scripts`.
Figures against ``scp -r``: bench/bench_transfer.py.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import paramiko

from mqi_communicator.errors import (
    CaseContentError,
    HostUnreachableError,
    RemoteCommandError,
    RemoteSourceMissingError,
    TransferError,
)
from mqi_communicator.remote.abort import check_abort, close_on_abort
from mqi_communicator.remote.manifest import Manifest, manifest_of_files, parse_sha256sum
from mqi_communicator.remote.protocol import ProgressCallback
from mqi_communicator.remote.quoting import render_command
from mqi_communicator.remote.remote_scripts import (
    EXIT_NO_SOURCE,
    cleanup_script,
    download_manifest_script,
    download_tar_script,
)
from mqi_communicator.remote.ssh_exec import ChannelDrain, connection_lost, remaining
from mqi_communicator.remote.tarstream import (
    CHUNK,
    TarExtractor,
    enumerate_tree,
)

__all__ = [
    "cleanup_command",
    "download_over_channel",
    "finish_channel",
    "normalize_remote_dir",
    "open_command",
    "partial_name",
    "report_progress",
]


def normalize_remote_dir(remote_dir: str) -> str:
    """Strip trailing slashes, prefix ``./`` to a leading ``-``; refuse ``""``, ``/``, ``.``."""
    norm = remote_dir.rstrip("/")
    if not norm or norm in (".", ".."):
        raise ValueError(f"unusable remote directory: {remote_dir!r}")
    if norm.startswith("-"):  # so no tool (find, tar) can mistake it for an option
        norm = "./" + norm
    return norm


def partial_name(remote_dir: str) -> str:
    """``<remote_dir>.partial-<random>``: where an upload lands before verification."""
    return f"{remote_dir}.partial-{secrets.token_hex(6)}"


def cleanup_command(partials: list[str]) -> str:
    """Shell text removing partial directories and their manifests (best effort)."""
    return cleanup_script(partials)


def report_progress(progress: ProgressCallback | None, done: int, total: int) -> None:
    """Call ``progress`` (if any) with ``done`` clamped to ``total``."""
    if progress is not None:
        progress(min(done, total), total)


def _read_header(chan: paramiko.Channel, where: str) -> tuple[bytes, bytes]:
    buf = b""
    while b"\n" not in buf:
        data = chan.recv(CHUNK)
        if not data:
            return buf, b""
        buf += data
        if len(buf) > 4096 and b"\n" not in buf:
            raise TransferError(f"{where}: download stream has no header")
    head, rest = buf.split(b"\n", 1)
    return head, rest


def open_command(
    transport: paramiko.Transport, text: str, timeout: float, where: str, *, eof: bool = True
) -> paramiko.Channel:
    """Start ``text`` on a new channel; with ``eof`` its stdin is closed at once."""
    try:
        chan = transport.open_session(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise HostUnreachableError(f"{where}: cannot open a channel: {err}") from err
    try:
        chan.settimeout(timeout)
        chan.exec_command(text)
        if eof:
            chan.shutdown_write()
    except (paramiko.SSHException, OSError, EOFError) as err:
        chan.close()
        raise HostUnreachableError(f"{where}: cannot start a remote command: {err}") from err
    return chan


def finish_channel(
    chan: paramiko.Channel, transport: paramiko.Transport, deadline: float, what: str, where: str
) -> int:
    """Wait for ``chan``'s exit status; a drop raises ``HostUnreachableError``.

    Raises:
        TimeoutError: no status before ``deadline`` (callers map it).
    """
    chan.status_event.wait(remaining(deadline))
    if not chan.status_event.is_set():
        raise TimeoutError(f"no exit status from {what} before the deadline")
    if chan.exit_status == -1 and connection_lost(transport):
        raise HostUnreachableError(f"{where}: connection dropped during {what}")
    status: int = chan.exit_status
    return status


def download_over_channel(
    transport: paramiko.Transport,
    remote_dir: str,
    local_dir: Path,
    *,
    env: Mapping[str, str],
    where: str,
    progress: ProgressCallback | None,
    timeout: float,
    abort: threading.Event | None = None,
) -> Manifest:
    """Stream ``remote_dir`` into ``local_dir`` through a temp sibling; return the manifest.

    Two channels run at once: one streams the tar archive, the other hashes the remote
    tree (so remote hashing overlaps the transfer). ``abort`` stops the stream (the
    temp sibling is removed; ``local_dir`` never appears).

    Raises:
        TransferAborted: ``abort`` was set.
        HostUnreachableError: connect/drop/timeout.
        RemoteSourceMissingError: ``remote_dir`` does not exist.
        RemoteCommandError: ``local_dir`` exists.
        TransferError: remote tar, local extraction or verification failed.
    """
    deadline = time.monotonic() + timeout
    if local_dir.exists() or local_dir.is_symlink():
        raise RemoteCommandError(f"{where}: download destination {local_dir} already exists")
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = local_dir.with_name(f"{local_dir.name}.partial-{secrets.token_hex(6)}")
    hasher = open_command(
        transport, render_command(download_manifest_script(remote_dir), env), timeout, where
    )
    chan: paramiko.Channel | None = None
    extractor: TarExtractor | None = None
    try:
        h_out = ChannelDrain(hasher, stderr=False)
        h_err = ChannelDrain(hasher, stderr=True)
        chan = open_command(
            transport, render_command(download_tar_script(remote_dir), env), timeout, where
        )
        errs = ChannelDrain(chan, stderr=True)
        what = f"{where}: download of {remote_dir}"
        with close_on_abort(abort, chan.close):
            header, rest = _read_header(chan, where)
            if header:
                try:
                    total = int(header)
                except ValueError as exc:
                    raise TransferError(f"{where}: bad download header {header!r}") from exc
                tmp.mkdir()
                extractor = TarExtractor(tmp)
                received = len(rest)
                report_progress(progress, 0, total)
                if rest:
                    extractor.write(rest)
                while data := chan.recv(CHUNK):
                    check_abort(abort, what)
                    extractor.write(data)
                    received += len(data)
                    report_progress(progress, received, total)
                    if time.monotonic() > deadline:
                        raise TimeoutError("transfer deadline")
        check_abort(abort, what)  # a channel the abort watcher closed reads as EOF
        errs.join(remaining(deadline))
        status = finish_channel(chan, transport, deadline, f"download of {remote_dir}", where)
        stderr = errs.text().strip()
        if status == EXIT_NO_SOURCE:
            raise RemoteSourceMissingError(f"{where}: {stderr}", exit_code=status, stderr=stderr)
        if status != 0 or extractor is None:
            raise TransferError(
                f"{where}: download of {remote_dir} failed (exit {status}): {stderr}"
            )
        extractor.close()
        extractor = None
        h_out.join(remaining(deadline))
        h_err.join(remaining(deadline))
        h_status = finish_channel(hasher, transport, deadline, f"hashing {remote_dir}", where)
        if h_status != 0:
            raise TransferError(
                f"{where}: hashing {remote_dir} failed (exit {h_status}): {h_err.text().strip()}"
            )
        manifest = _verify_download(tmp, parse_sha256sum(h_out.raw()), where, remote_dir)
        if local_dir.exists() or local_dir.is_symlink():
            raise RemoteCommandError(
                f"{where}: download destination {local_dir} appeared meanwhile"
            )
        tmp.rename(local_dir)
        report_progress(progress, manifest.total_bytes, manifest.total_bytes)
        return manifest
    except TimeoutError as exc:
        raise HostUnreachableError(
            f"{where}: download of {remote_dir} exceeded its {timeout:g} s timeout"
        ) from exc
    except (paramiko.SSHException, EOFError) as exc:
        check_abort(abort, f"{where}: download of {remote_dir}")
        raise HostUnreachableError(f"{where}: connection failed during download: {exc}") from exc
    except OSError as exc:
        check_abort(abort, f"{where}: download of {remote_dir}")
        if not transport.is_active():
            raise HostUnreachableError(
                f"{where}: connection failed during download: {exc}"
            ) from exc
        raise TransferError(f"{where}: download into {local_dir} failed: {exc}") from exc
    finally:
        hasher.close()
        if chan is not None:
            chan.close()
        if extractor is not None:
            extractor.abort()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _verify_download(tmp: Path, remote: dict[str, str], where: str, remote_dir: str) -> Manifest:
    try:
        tree = enumerate_tree(tmp, allow_empty=True, follow_symlinks=False)
    except CaseContentError as err:
        raise TransferError(f"{where}: downloaded tree of {remote_dir} is unsafe: {err}") from err
    manifest = manifest_of_files((f.rel, f.path) for f in tree.files)
    diff = manifest.differences(remote)
    if diff:
        raise TransferError(f"{where}: download of {remote_dir} did not verify: {diff[:5]}")
    return manifest
