"""The SSH :class:`~mqi_communicator.remote.protocol.Transport`.

One persistent Fabric ``Connection`` per instance is reused for every call; commands
and transfers use raw paramiko exec channels on its transport (2.4 ms per trivial
command here, against 14.5 ms through Fabric's ``run``).

Reconnects are transparent but never blind: when the connection is found dead at the
start of a call, the call reconnects first (nothing was sent yet). A call cut mid-way
raises ``HostUnreachableError`` and is never retried here: the command may or may not
have run, and only the caller knows whether it is idempotent.

Remote commands run through the login shell of ``user``, which must be POSIX-like
(bash, dash, zsh). ``env`` is prepended to every command as ``env K=V ...``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import paramiko
from fabric import Connection

from mqi_communicator.errors import HostUnreachableError, RemoteCommandError, TransferAborted
from mqi_communicator.remote.protocol import (
    CommandResult,
    ProgressCallback,
    TransferReport,
    check_removable,
)
from mqi_communicator.remote.quoting import render_command
from mqi_communicator.remote.ssh.connect import SshTarget, open_connection
from mqi_communicator.remote.ssh.exec import exec_command
from mqi_communicator.remote.ssh.host_keys import default_known_hosts
from mqi_communicator.remote.transfer.compression import Setting
from mqi_communicator.remote.transfer.far_side_scripts import PYTHON_PROBE
from mqi_communicator.remote.transfer.ssh_channel import (
    cleanup_command,
    normalize_remote_dir,
    partial_name,
)
from mqi_communicator.remote.transfer.ssh_download import download_over_channel
from mqi_communicator.remote.transfer.ssh_upload import upload_over_channel
from mqi_communicator.remote.transfer.tarstream import enumerate_tree
from mqi_communicator.remote.transfer.upload_codec import CodecChooser

__all__ = ["SshTransport"]

log = logging.getLogger(__name__)


class SshTransport:
    """Runs commands on, and moves trees to and from, one host over SSH.

    Args:
        host_name: Short name for logs and errors.
        hostname: DNS name or address to connect to.
        port: SSH port.
        user: Login user (None: the local user name).
        key_filename: Private key; None uses the agent and default keys.
        known_hosts: known_hosts file to check the host key against
            (default ``~/.ssh/known_hosts``).
        accept_new_host_key: Accept (warn, and record) an unknown host key; a
            changed key is always refused.
        connect_timeout: Seconds for TCP connect, banner and authentication.
        keepalive_s: Interval of SSH keepalive packets.
        env: Environment variables prepended to every remote command.
        compression: Uploads' stream compression: ``auto`` (measured per upload,
            :mod:`~mqi_communicator.remote.transfer.compression`), ``off``, ``zstd``, ``zlib``.
    """

    def __init__(
        self,
        host_name: str,
        hostname: str,
        *,
        port: int = 22,
        user: str | None = None,
        key_filename: Path | None = None,
        known_hosts: Path | None = None,
        accept_new_host_key: bool = False,
        connect_timeout: float = 10.0,
        keepalive_s: int = 15,
        env: Mapping[str, str] | None = None,
        compression: Setting = "auto",
    ) -> None:
        self._target = SshTarget(
            host_name=host_name,
            hostname=hostname,
            port=port,
            user=user,
            key_filename=key_filename,
            known_hosts=known_hosts or default_known_hosts(),
            accept_new_host_key=accept_new_host_key,
            connect_timeout=connect_timeout,
            keepalive_s=keepalive_s,
        )
        self._env = dict(env or {})
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        #: Partial upload dirs left behind by a dropped connection; removed on reconnect.
        self._pending_cleanup: list[str] = []
        #: The far side's python3 (None: none usable), probed once per connection.
        self._python: tuple[paramiko.Transport, str | None] | None = None
        self.codecs = CodecChooser(compression)

    @property
    def host_name(self) -> str:
        """The configured host name."""
        return self._target.host_name

    def _where(self) -> str:
        return self._target.describe()

    def _transport(self) -> paramiko.Transport:
        """The live paramiko transport, connecting (again) if needed."""
        with self._lock:
            conn = self._conn
            if conn is not None and conn.transport is not None and conn.transport.is_active():
                transport: paramiko.Transport = conn.transport
                return transport
            if conn is not None:
                log.info("%s: connection lost; reconnecting", self._where())
                self._close_conn()
            self._conn = open_connection(self._target)
            assert self._conn.transport is not None
            transport = self._conn.transport
        self._run_pending_cleanup(transport)
        return transport

    def _run_pending_cleanup(self, transport: paramiko.Transport) -> None:
        with self._lock:
            pending, self._pending_cleanup = self._pending_cleanup, []
        if not pending:
            return
        try:
            exec_command(
                transport, cleanup_command(pending), timeout=60.0, stdin=None, where=self._where()
            )
        except HostUnreachableError:
            with self._lock:
                self._pending_cleanup.extend(pending)

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except (OSError, EOFError, paramiko.SSHException) as err:
                log.debug("%s: error while closing: %s", self._where(), err)

    def _on_unreachable(self) -> None:
        # Drop a dead connection now so the next call reconnects at once.
        with self._lock:
            conn = self._conn
            if conn is not None and (conn.transport is None or not conn.transport.is_active()):
                self._close_conn()

    def run(
        self,
        command: Sequence[str] | str,
        *,
        timeout: float,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run ``command`` remotely (a sequence is quoted, a str used verbatim).

        Raises:
            HostUnreachableError: connect failed, the connection dropped or ``timeout``.
            HostKeyError: the host key is unknown or changed.
            ConfigError: authentication failed.
        """
        text = render_command(command, self._env)
        transport = self._transport()
        try:
            return exec_command(transport, text, timeout=timeout, stdin=stdin, where=self._where())
        except HostUnreachableError:
            self._on_unreachable()
            raise

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
        """Send ``local_dir`` as one verified tar stream; ``remote_dir`` must not exist.

        ``exclude``: relative paths never sent (``tarstream.enumerate_tree``); the far
        side's verification then also proves that nothing else arrived. ``abort``:
        see :mod:`~mqi_communicator.remote.transfer.abort` (the far side removes its partial).

        Raises:
            TransferAborted: ``abort`` was set.
            CaseContentError: the local tree cannot be sent (before anything is sent).
            RemoteCommandError: ``remote_dir`` already exists.
            TransferError: remote extraction or verification failed (nothing left behind).
            HostUnreachableError: connect failed, dropped, or ``timeout``.
        """
        started = time.monotonic()
        remote_dir = normalize_remote_dir(remote_dir)
        tree = enumerate_tree(local_dir, exclude=exclude)
        transport = self._transport()
        partial = partial_name(remote_dir)
        try:
            python = self._far_python(transport)
            choice = self.codecs.choose(
                transport, tree, env=self._env, where=self._where(), far_python=bool(python)
            )
            manifest = upload_over_channel(
                transport,
                tree,
                remote_dir,
                partial,
                env=self._env,
                where=self._where(),
                progress=progress,
                timeout=timeout,
                python=python,
                codec=choice.codec,
                zstd=choice.zstd,
                abort=abort,
            )
        except TransferAborted:
            # The one-command receiver cleans up on EOF; the two-command one may not.
            with self._lock:
                self._pending_cleanup.append(partial)
            raise
        except HostUnreachableError:
            with self._lock:
                self._pending_cleanup.append(partial)
            self._on_unreachable()
            if transport.is_active():  # a timeout, not a drop: clean up now
                self._run_pending_cleanup(transport)
            raise
        return manifest.report(time.monotonic() - started, tree.excluded)

    def _far_python(self, transport: paramiko.Transport) -> str | None:
        """The far side's python3 >= 3.6 for one-command uploads, probed once per connection."""
        with self._lock:
            known = self._python
        if known is not None and known[0] is transport:
            return known[1]
        text = render_command(PYTHON_PROBE, self._env)
        result = exec_command(transport, text, timeout=60.0, stdin=None, where=self._where())
        found = result.stdout.strip() if result.exit_code == 0 else ""
        python = found if found.startswith("/") and "\n" not in found else None
        if python is None:
            log.info(
                "%s: no python3 >= 3.6 on the far side; uploads verify in two commands",
                self._where(),
            )
        with self._lock:
            self._python = (transport, python)
        return python

    def download_tree(
        self,
        remote_dir: str,
        local_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
        abort: threading.Event | None = None,
    ) -> TransferReport:
        """Fetch ``remote_dir`` as one verified tar stream; ``local_dir`` must not exist.

        Raises:
            TransferAborted: ``abort`` was set (nothing left locally).
            RemoteSourceMissingError: ``remote_dir`` is missing.
            RemoteCommandError: ``local_dir`` exists.
            TransferError: remote tar, local extraction or verification failed.
            HostUnreachableError: connect failed, dropped, or ``timeout``.
        """
        started = time.monotonic()
        remote_dir = normalize_remote_dir(remote_dir)
        transport = self._transport()
        try:
            manifest = download_over_channel(
                transport,
                remote_dir,
                local_dir,
                env=self._env,
                where=self._where(),
                progress=progress,
                timeout=timeout,
                abort=abort,
            )
        except HostUnreachableError:
            self._on_unreachable()
            raise
        return manifest.report(time.monotonic() - started)

    def remove_tree(self, remote_dir: str, *, timeout: float = 600.0) -> None:
        """``rm -rf -- remote_dir`` on the host (absolute, not ``/``); missing is fine.

        Raises:
            HostUnreachableError: connect failed, dropped, or ``timeout``.
            RemoteCommandError: ``rm`` failed (its stderr in the message).
        """
        path = check_removable(remote_dir)
        result = self.run(["rm", "-rf", "--", path], timeout=timeout)
        if result.exit_code != 0:
            raise RemoteCommandError(
                f"{self._where()}: cannot remove {path} (exit {result.exit_code}): "
                f"{result.stderr.strip()[:500]}",
                exit_code=result.exit_code,
                stderr=result.stderr,
            )

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        with self._lock:
            self._close_conn()
