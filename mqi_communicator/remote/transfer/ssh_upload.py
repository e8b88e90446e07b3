"""Verified, atomic upload of a tree as ONE tar stream over ONE exec channel.

The far side refuses an existing ``remote_dir``, creates ``<remote_dir>.partial-<random>``
and receives the tar archive we stream on stdin (1 MiB chunks sent as 32 KiB packets,
stderr drained in a thread). Meanwhile a local thread hashes the same files, so the
manifest is ready when the archive has gone. Then, by what the far side has:

- python3 >= 3.6 (one command): :mod:`~mqi_communicator.remote.transfer.far_side_receiver`
  hashes each file as it writes it; we append the manifest and a trailer to the same
  stdin; it compares, and the script renames the partial directory into place.
- no python3 (two commands): ``tar -x`` receives; a second command gets the manifest,
  checks every file with ``sha256sum`` and the exact set of paths, then renames.

Either way the rename is ``mv -n`` (never replacing a directory that appeared
meanwhile), and any failure on the far side removes the partial directory before its
script exits. A dropped connection makes the far side see EOF without the trailer,
which triggers the same cleanup, and the transport re-runs the cleanup on its next
connection. Nothing unverified ever appears at ``remote_dir``; the local source is only
read.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import paramiko

from mqi_communicator.errors import (
    CaseContentError,
    HostUnreachableError,
    RemoteCommandError,
    TransferError,
)
from mqi_communicator.remote.protocol import ProgressCallback
from mqi_communicator.remote.quoting import render_command
from mqi_communicator.remote.ssh.exec import (
    ChannelDrain,
    connection_lost,
    exec_command,
    remaining,
    send_all,
)
from mqi_communicator.remote.transfer.abort import check_abort, close_on_abort
from mqi_communicator.remote.transfer.compression import Codec, Compressor, make_compressor
from mqi_communicator.remote.transfer.far_side_receiver import trailer
from mqi_communicator.remote.transfer.far_side_scripts import (
    EXIT_DEST_EXISTS,
    upload_commit_script,
    upload_one_pass_script,
    upload_receive_script,
)
from mqi_communicator.remote.transfer.manifest import Manifest, manifest_of_files
from mqi_communicator.remote.transfer.ssh_channel import (
    cleanup_command,
    finish_channel,
    open_command,
    report_progress,
)
from mqi_communicator.remote.transfer.tarstream import CaseTree, iter_tar_chunks

__all__ = ["upload_over_channel"]


@dataclass(frozen=True)
class _Upload:
    """What every step of one upload needs."""

    transport: paramiko.Transport
    remote_dir: str
    env: Mapping[str, str]
    where: str
    progress: ProgressCallback | None
    deadline: float
    #: Compression of the whole stdin (one-command protocol only; see compression.py).
    codec: Codec = "off"
    abort: threading.Event | None = None


def upload_over_channel(
    transport: paramiko.Transport,
    tree: CaseTree,
    remote_dir: str,
    partial: str,
    *,
    env: Mapping[str, str],
    where: str,
    progress: ProgressCallback | None,
    timeout: float,
    python: str | None,
    codec: Codec = "off",
    zstd: str | None = None,
    abort: threading.Event | None = None,
) -> Manifest:
    """Stream ``tree`` to ``remote_dir`` through ``partial``; return the verified manifest.

    Args:
        python: The far side's python3 (one-command protocol), or None (two commands).
        abort: Set when the engine stops: the stream is cut off (no trailer, so the far
            side refuses and removes ``partial``) and nothing more is sent.
        codec: Compress the stream (needs ``python``; ``zstd``: the far side's binary).

    Raises:
        TransferAborted: ``abort`` was set.
        HostUnreachableError: the connection dropped or ``timeout`` passed (``partial``
            may then need cleanup on the next connection).
        RemoteCommandError: ``remote_dir`` already exists.
        TransferError: remote extraction, disk space or verification failed.
        CaseContentError: a local file could not be read while streaming.
    """
    if python is None or (codec == "zstd" and not zstd):
        codec = "off"
    up = _Upload(
        transport, remote_dir, env, where, progress, time.monotonic() + timeout, codec, abort
    )
    codec_args = {"off": (), "zlib": ("zlib",), "zstd": ("zstd", zstd or "")}[codec]
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqi-hash")
    try:
        hashing: Future[Manifest] = pool.submit(
            manifest_of_files, [(f.rel, f.path) for f in tree.files], workers=1
        )
        if python is not None:
            manifest = _send(
                up, tree, upload_one_pass_script(remote_dir, partial, python, codec_args), hashing
            )
        else:
            _send(up, tree, upload_receive_script(remote_dir, partial), None)
            check_abort(abort, f"{where}: upload to {remote_dir}")  # commit nothing
            try:
                manifest = _local_manifest(hashing, up.deadline)
                _commit(up, manifest, partial)
            except (CaseContentError, TransferError, RemoteCommandError):
                _cleanup_now(transport, partial, where)
                raise
    except TimeoutError as exc:
        raise HostUnreachableError(
            f"{where}: upload to {remote_dir} exceeded its {timeout:g} s timeout"
        ) from exc
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    report_progress(progress, manifest.total_bytes, manifest.total_bytes)
    return manifest


def _local_manifest(hashing: Future[Manifest], deadline: float) -> Manifest:
    try:
        return hashing.result(timeout=remaining(deadline))
    except FutureTimeout as exc:
        raise TimeoutError("local hashing deadline") from exc
    except OSError as err:
        raise CaseContentError(f"could not read a case file while hashing: {err}") from err


def _send(up: _Upload, tree: CaseTree, script: str, hashing: Future[Manifest] | None) -> Manifest:
    """Run ``script`` fed with the archive (and, given ``hashing``, the manifest).

    Returns the manifest when one was sent (else an empty one, unused by the caller).
    """
    manifest = Manifest(())
    text = render_command(script, up.env)
    chan = open_command(up.transport, text, remaining(up.deadline), up.where, eof=False)
    send_error: BaseException | None = None
    try:
        out = ChannelDrain(chan, stderr=False)
        errs = ChannelDrain(chan, stderr=True)
        comp = make_compressor(up.codec)
        # compressed: the far side checks every decoded byte against this (see its docs)
        stream = None if comp is None else hashlib.sha256()
        try:
            with close_on_abort(up.abort, chan.close):
                _stream_archive(chan, tree, up, comp, stream)
            # Set now, the watcher may have closed the channel: send no trailer.
            check_abort(up.abort, f"{up.where}: upload to {up.remote_dir}")
            if hashing is not None:
                # Without the trailer the far side refuses the upload, so a local
                # failure here only has to stop sending (the finally closes the channel).
                manifest = _local_manifest(hashing, up.deadline)
                body = manifest.to_bytes()
                if comp is None or stream is None:
                    send_all(chan, body + trailer(manifest.files))
                else:
                    stream.update(body)
                    tail = body + trailer(manifest.files, stream.hexdigest())
                    send_all(chan, comp.compress(tail) + comp.flush())
            chan.shutdown_write()
        except (CaseContentError, TimeoutError):
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            send_error = exc  # the far side may have exited early; its status says why
        out.join(remaining(up.deadline))
        errs.join(remaining(up.deadline))
        _check_status(up, chan, send_error, errs.text() + out.text())
    except TimeoutError:
        raise  # an OSError too, but mapped by the caller to "exceeded its timeout"
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostUnreachableError(f"{up.where}: connection failed during upload: {exc}") from exc
    finally:
        chan.close()
    return manifest


def _stream_archive(
    chan: paramiko.Channel,
    tree: CaseTree,
    up: _Upload,
    comp: Compressor | None = None,
    stream: hashlib._Hash | None = None,
) -> None:
    total = tree.total_bytes
    sent = 0
    what = f"{up.where}: upload to {up.remote_dir}"
    report_progress(up.progress, 0, total)
    # closing(): stop the local tar at once if sending fails
    with contextlib.closing(iter_tar_chunks(tree)) as chunks:
        for chunk in chunks:
            check_abort(up.abort, what)
            if stream is not None:
                stream.update(chunk)
            try:
                # progress counts the case's bytes, compressed or not
                send_all(chan, chunk if comp is None else comp.compress(chunk))
            except (OSError, EOFError, paramiko.SSHException):
                check_abort(up.abort, what)  # the abort watcher closed the channel
                raise
            sent += len(chunk)
            report_progress(up.progress, sent, total)
            if time.monotonic() > up.deadline:
                raise TimeoutError("transfer deadline")


def _check_status(
    up: _Upload, chan: paramiko.Channel, send_error: BaseException | None, output: str
) -> None:
    what = f"upload to {up.remote_dir}"
    try:
        status = finish_channel(chan, up.transport, up.deadline, what, up.where)
    except HostUnreachableError as exc:
        suffix = f" ({send_error})" if send_error else ""
        raise HostUnreachableError(f"{exc}{suffix}") from send_error
    if status == -1 and send_error is not None and connection_lost(up.transport):
        raise HostUnreachableError(f"{up.where}: connection dropped during {what}") from send_error
    stderr = output.strip()
    if status == EXIT_DEST_EXISTS:
        raise RemoteCommandError(
            f"{up.where}: upload refused: {stderr}", exit_code=status, stderr=stderr
        )
    if status != 0:
        raise TransferError(f"{up.where}: {what} failed (exit {status}): {stderr}")
    if send_error is not None:
        raise TransferError(f"{up.where}: {what} ended oddly: {send_error}")


def _commit(up: _Upload, manifest: Manifest, partial: str) -> None:
    remote_dir, where = up.remote_dir, up.where
    text = render_command(upload_commit_script(remote_dir, partial, manifest.files), up.env)
    result = exec_command(
        up.transport,
        text,
        timeout=max(remaining(up.deadline), 1.0),
        stdin=manifest.to_bytes(),
        where=where,
    )
    stderr = (result.stderr + result.stdout).strip()
    if result.exit_code == EXIT_DEST_EXISTS:
        raise RemoteCommandError(
            f"{where}: upload refused: {stderr}", exit_code=result.exit_code, stderr=stderr
        )
    if result.exit_code != 0:
        raise TransferError(
            f"{where}: upload to {remote_dir} did not commit (exit {result.exit_code}): {stderr}"
        )


def _cleanup_now(transport: paramiko.Transport, partial: str, where: str) -> None:
    # Best effort; if the host is gone the transport retries on its next connection.
    with contextlib.suppress(HostUnreachableError):
        exec_command(transport, cleanup_command([partial]), timeout=60.0, stdin=None, where=where)
