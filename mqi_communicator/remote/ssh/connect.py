"""Opening one Fabric/paramiko SSH connection, tuned and with strict host keys.

Tuning (measured on loopback, see the sshd recipe): TCP_NODELAY on the socket (a
small request otherwise waits for a delayed ACK), ``aes128-gcm@openssh.com`` first in
the preferred ciphers, and keepalive packets so a dead peer is noticed.

Error mapping: refused / DNS / socket errors / SSH negotiation failures ->
``HostUnreachableError`` (transient). Unknown or changed host key -> ``HostKeyError``.
Authentication failure -> ``ConfigError`` (permanent): the user or key is wrong in our
configuration, and retrying with backoff only hides that from the operator.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from mqi_communicator.errors import ConfigError, HostKeyError, HostUnreachableError
from mqi_communicator.remote.ssh.host_keys import (
    AcceptNewHostKeyPolicy,
    StrictHostKeyPolicy,
    host_key_changed_error,
    load_known_hosts,
)

__all__ = ["PREFERRED_CIPHERS", "SshTarget", "open_connection"]

#: Fastest first; the rest keep paramiko's order.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclass(frozen=True)
class SshTarget:
    """Where and how to connect."""

    host_name: str
    hostname: str
    port: int
    user: str | None
    key_filename: Path | None
    known_hosts: Path
    accept_new_host_key: bool
    connect_timeout: float
    keepalive_s: int

    def describe(self) -> str:
        """``name (user@host:port)`` for error messages."""
        who = f"{self.user}@" if self.user else ""
        return f"{self.host_name} ({who}{self.hostname}:{self.port})"


def _transport_factory(sock: Any, **kwargs: Any) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    opts = transport.get_security_options()
    available = tuple(opts.ciphers)
    first = tuple(c for c in PREFERRED_CIPHERS if c in available)
    opts.ciphers = first + tuple(c for c in available if c not in first)
    return transport


def _socket(target: SshTarget) -> socket.socket:
    try:
        sock = socket.create_connection(
            (target.hostname, target.port), timeout=target.connect_timeout
        )
    except OSError as err:  # refused, DNS (gaierror), unreachable, timeout
        raise HostUnreachableError(f"{target.describe()}: cannot connect: {err}") from err
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def open_connection(target: SshTarget) -> Connection:
    """Open and return a connected Fabric ``Connection`` for ``target``.

    Raises:
        HostUnreachableError: the host could not be reached or the SSH handshake failed.
        HostKeyError: the host key is unknown (and not accepted) or changed.
        ConfigError: authentication failed.
    """
    connect_kwargs: dict[str, Any] = {
        "sock": _socket(target),
        "transport_factory": _transport_factory,
        "banner_timeout": target.connect_timeout,
        "auth_timeout": target.connect_timeout,
        "channel_timeout": target.connect_timeout,
    }
    if target.key_filename is not None:
        connect_kwargs.update(
            key_filename=str(target.key_filename), look_for_keys=False, allow_agent=False
        )
    conn = Connection(
        host=target.hostname,
        user=target.user,
        port=target.port,
        connect_timeout=target.connect_timeout,
        connect_kwargs=connect_kwargs,
        config=Config(overrides={"load_ssh_configs": False}),
    )
    client: paramiko.SSHClient = conn.client
    load_known_hosts(client, target.known_hosts)
    policy_cls = AcceptNewHostKeyPolicy if target.accept_new_host_key else StrictHostKeyPolicy
    client.set_missing_host_key_policy(policy_cls(target.known_hosts, target.port))
    try:
        conn.open()
    except paramiko.BadHostKeyException as err:
        _close_quietly(conn)
        raise host_key_changed_error(target.hostname, target.port, target.known_hosts, err) from err
    except HostKeyError:
        _close_quietly(conn)
        raise
    except paramiko.AuthenticationException as err:
        _close_quietly(conn)
        raise ConfigError(
            f"{target.describe()}: authentication failed with key {target.key_filename}: {err}"
        ) from err
    except (paramiko.SSHException, OSError, EOFError) as err:
        _close_quietly(conn)
        raise HostUnreachableError(f"{target.describe()}: SSH handshake failed: {err}") from err
    transport = conn.transport
    assert transport is not None
    transport.set_keepalive(target.keepalive_s)
    return conn


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # best effort after a failed open
        conn.close()
