"""Host-key checking for SSH connections: strict by default.

Fabric accepts any host key out of the box (AutoAddPolicy, no known_hosts). We load the
configured known_hosts file and refuse unknown keys. A changed key is always refused:
paramiko raises ``BadHostKeyException`` before any policy is consulted, and we turn it
into a ``HostKeyError`` saying the key CHANGED. With ``accept_new_host_key`` an unknown
(never a changed) key is accepted once, logged as a WARNING and appended to known_hosts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import paramiko

from mqi_communicator.errors import HostKeyError

__all__ = [
    "AcceptNewHostKeyPolicy",
    "StrictHostKeyPolicy",
    "default_known_hosts",
    "host_key_changed_error",
    "load_known_hosts",
]

log = logging.getLogger(__name__)


def default_known_hosts() -> Path:
    """``~/.ssh/known_hosts`` of the user running the service."""
    return Path.home() / ".ssh" / "known_hosts"


def load_known_hosts(client: paramiko.SSHClient, known_hosts: Path) -> None:
    """Load ``known_hosts`` into ``client``; a missing file counts as empty.

    Raises:
        HostKeyError: the file exists but cannot be parsed or read.
    """
    if not known_hosts.exists():
        return
    try:
        client.load_host_keys(str(known_hosts))
    except (OSError, paramiko.SSHException) as err:
        raise HostKeyError(f"cannot read known_hosts file {known_hosts}: {err}") from err


def _key_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """A policy for unknown keys that knows which known_hosts file and port are in use."""

    def __init__(self, known_hosts: Path, port: int) -> None:
        self._known_hosts = known_hosts
        self._port = port


class StrictHostKeyPolicy(_KnownHostsPolicy):
    """Refuse an unknown host key with a message naming host, port and known_hosts."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        """Raise ``HostKeyError``: the key is not in known_hosts."""
        raise HostKeyError(
            f"host key of {hostname} (port {self._port}) is unknown: no entry in known_hosts "
            f"file {self._known_hosts} (offered {key.get_name()} "
            f"{key.fingerprint}). Verify the fingerprint and add it "
            f"(ssh-keyscan -p {self._port} {hostname} >> {self._known_hosts}) or enable "
            "accept_new_host_key for this host."
        )


class AcceptNewHostKeyPolicy(_KnownHostsPolicy):
    """Accept an unknown host key (trust on first use), warn, and append it to known_hosts."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        """Record ``key`` for ``hostname`` in the client and in the known_hosts file."""
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning(
            "accepting NEW host key for %s (port %d): %s %s; appending it to %s",
            hostname,
            self._port,
            key.get_name(),
            key.fingerprint,
            self._known_hosts,
        )
        try:
            self._known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self._known_hosts.open("a", encoding="utf-8") as f:
                # paramiko passes "[host]:port" already for non-default ports.
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        except OSError as err:
            raise HostKeyError(f"cannot append host key to {self._known_hosts}: {err}") from err


def host_key_changed_error(
    hostname: str, port: int, known_hosts: Path, err: paramiko.BadHostKeyException
) -> HostKeyError:
    """The ``HostKeyError`` for a server whose key differs from the known one."""
    return HostKeyError(
        f"host key of {_key_name(hostname, port)} has CHANGED: known_hosts file {known_hosts} "
        f"expects {err.expected_key.get_name()} {err.expected_key.fingerprint}, the server "
        f"offered {err.key.get_name()} {err.key.fingerprint}. Refusing to connect; this may "
        "be an attack or a reinstalled server. Fix known_hosts after checking."
    )
