"""Verified tree downloads over SSH.

Every transfer is ONE tar archive streamed over ONE exec channel (never per-file
SFTP); uploads live in :mod:`~mqi_communicator.remote.transfer.ssh_upload`, the helpers
both directions share in :mod:`~mqi_communicator.remote.transfer.ssh_channel`.

Download: two channels run at once on the same connection: one prints
``<total bytes>\\n<tar archive>``, the other hashes the remote tree (its manifest
text), so remote hashing overlaps the transfer. We extract into a temp sibling of
``local_dir``, check every file against the remote manifest (set of paths and
sha256), then rename into place; ``local_dir`` never holds an unverified tree.

The far-side scripts live in :mod:`~mqi_communicator.remote.transfer.far_side_scripts`.
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
from mqi_communicator.remote.protocol import ProgressCallback
from mqi_communicator.remote.quoting import render_command
from mqi_communicator.remote.ssh.exec import ChannelDrain, remaining
from mqi_communicator.remote.transfer.abort import check_abort, close_on_abort
from mqi_communicator.remote.transfer.far_side_scripts import (
    EXIT_NO_SOURCE,
    download_manifest_script,
    download_tar_script,
)
from mqi_communicator.remote.transfer.manifest import Manifest, manifest_of_files, parse_sha256sum
from mqi_communicator.remote.transfer.ssh_channel import (
    finish_channel,
    open_command,
    report_progress,
)
from mqi_communicator.remote.transfer.tarstream import (
    CHUNK,
    TarExtractor,
    enumerate_tree,
)

__all__ = ["download_over_channel"]


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
