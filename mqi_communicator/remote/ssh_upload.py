"""Verified, atomic upload of a tree as ONE tar stream over ONE exec channel.

Phase 1 (receive channel): the far side refuses an existing ``remote_dir``, creates
``<remote_dir>.partial-<random>`` and extracts the tar archive we stream on stdin
(1 MiB ``sendall`` chunks, stderr drained in a thread). Meanwhile a local thread
hashes the same files, so building the manifest overlaps the transfer.

Phase 2 (commit channel): we send the manifest; the far side checks every file
(sha256 and the exact set of paths), and only then renames the partial directory to
``remote_dir`` with ``mv -n`` (never replacing a directory that appeared meanwhile).

Any failure on the far side removes the partial directory before its script exits;
a dropped connection makes its tar see EOF, which triggers the same cleanup, and the
transport re-runs the cleanup on its next connection. Nothing unverified ever
appears at ``remote_dir``, and the local source is only read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import paramiko

from mqi_communicator.errors import (
    CaseContentError,
    HostUnreachableError,
    RemoteCommandError,
    TransferError,
)
from mqi_communicator.remote.manifest import Manifest, manifest_of_files
from mqi_communicator.remote.protocol import ProgressCallback
from mqi_communicator.remote.quoting import render_command
from mqi_communicator.remote.remote_scripts import (
    EXIT_DEST_EXISTS,
    upload_commit_script,
    upload_receive_script,
)
from mqi_communicator.remote.ssh_exec import ChannelDrain, connection_lost, exec_command, remaining
from mqi_communicator.remote.ssh_transfer import (
    cleanup_command,
    finish_channel,
    open_command,
    report_progress,
)
from mqi_communicator.remote.tarstream import CaseTree, iter_tar_chunks

__all__ = ["upload_over_channel"]


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
) -> Manifest:
    """Stream ``tree`` to ``remote_dir`` through ``partial``; return the verified manifest.

    Raises:
        HostUnreachableError: the connection dropped or ``timeout`` passed (``partial``
            may then need cleanup on the next connection).
        RemoteCommandError: ``remote_dir`` already exists.
        TransferError: remote extraction, disk space or verification failed.
        CaseContentError: a local file could not be read while streaming.
    """
    deadline = time.monotonic() + timeout
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqi-hash")
    try:
        hashing: Future[Manifest] = pool.submit(
            manifest_of_files, [(f.rel, f.path) for f in tree.files], workers=1
        )
        _receive(transport, tree, remote_dir, partial, env, where, progress, deadline, timeout)
        try:
            manifest = hashing.result()
            _commit(transport, manifest, remote_dir, partial, env, where, deadline)
        except (CaseContentError, OSError, TransferError, RemoteCommandError) as err:
            _cleanup_now(transport, partial, where)
            if isinstance(err, OSError):
                raise CaseContentError(f"could not read {tree.root}: {err}") from err
            raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    report_progress(progress, manifest.total_bytes, manifest.total_bytes)
    return manifest


def _receive(
    transport: paramiko.Transport,
    tree: CaseTree,
    remote_dir: str,
    partial: str,
    env: Mapping[str, str],
    where: str,
    progress: ProgressCallback | None,
    deadline: float,
    timeout: float,
) -> None:
    total = tree.total_bytes
    text = render_command(upload_receive_script(remote_dir, partial), env)
    chan = open_command(transport, text, timeout, where, eof=False)
    send_error: BaseException | None = None
    try:
        out = ChannelDrain(chan, stderr=False)
        errs = ChannelDrain(chan, stderr=True)
        sent = 0
        report_progress(progress, 0, total)
        try:
            # closing(): stop the local tar at once if sending fails
            with contextlib.closing(iter_tar_chunks(tree)) as chunks:
                for chunk in chunks:
                    chan.sendall(chunk)
                    sent += len(chunk)
                    report_progress(progress, sent, total)
                    if time.monotonic() > deadline:
                        raise TimeoutError("transfer deadline")
            chan.shutdown_write()
        except (CaseContentError, TimeoutError):
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            send_error = exc  # the far side may have exited early; its status says why
        out.join(remaining(deadline))
        errs.join(remaining(deadline))
        try:
            status = finish_channel(chan, transport, deadline, f"upload to {remote_dir}", where)
        except HostUnreachableError as exc:
            raise HostUnreachableError(
                f"{exc}" + (f" ({send_error})" if send_error else "")
            ) from send_error
        if status == -1 and send_error is not None and connection_lost(transport):
            raise HostUnreachableError(f"{where}: connection dropped during upload") from send_error
        stderr = (errs.text() + out.text()).strip()
        if status == EXIT_DEST_EXISTS:
            raise RemoteCommandError(
                f"{where}: upload refused: {stderr}", exit_code=status, stderr=stderr
            )
        if status != 0:
            raise TransferError(f"{where}: upload to {remote_dir} failed (exit {status}): {stderr}")
        if send_error is not None:
            raise TransferError(f"{where}: upload to {remote_dir} ended oddly: {send_error}")
    except TimeoutError as exc:
        raise HostUnreachableError(
            f"{where}: upload to {remote_dir} exceeded its {timeout:g} s timeout"
        ) from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostUnreachableError(f"{where}: connection failed during upload: {exc}") from exc
    finally:
        chan.close()


def _commit(
    transport: paramiko.Transport,
    manifest: Manifest,
    remote_dir: str,
    partial: str,
    env: Mapping[str, str],
    where: str,
    deadline: float,
) -> None:
    text = render_command(upload_commit_script(remote_dir, partial, manifest.files), env)
    result = exec_command(
        transport,
        text,
        timeout=max(remaining(deadline), 1.0),
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
