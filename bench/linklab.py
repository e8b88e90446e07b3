"""Shared set-up of the link benchmarks: an sshd behind a rate-limited link, or on loopback.

:func:`limited_link` makes a network namespace joined to this one by a veth pair,
and shapes BOTH directions with ``tc qdisc add dev <veth> root tbf rate <rate>
burst 32kbit latency 400ms`` (netem has no kernel module here; tbf shapes egress, so
each end gets one). :func:`sshd` starts a throw-away OpenSSH server listening on an
address (inside the namespace, or on 127.0.0.1), with fresh keys and a known_hosts
line for that address. Both are context managers that undo everything they did, in
reverse order, also when the benchmark fails or is interrupted.

Needs root, ``ip`` and ``tc`` (iproute2) and the ``sch_tbf`` qdisc:
:func:`require_link_tools` says clearly which one is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
TBF = "tbf rate {rate} burst 32kbit latency 400ms"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def require_link_tools() -> None:
    """Exit with one clear line unless we are root with ip, tc and sshd at hand."""
    if os.geteuid() != 0:
        raise SystemExit("this benchmark needs root (network namespaces and tc qdiscs)")
    for tool in ("ip", "tc", "ssh-keygen", "scp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"this benchmark needs {tool!r} on PATH (apt-get install iproute2)")
    if not SSHD.exists():
        raise SystemExit(f"{SSHD} is missing (apt-get install openssh-server)")


@dataclass(frozen=True)
class Link:
    """The namespace and the addresses on either end of the shaped veth pair."""

    netns: str
    host_addr: str
    ns_addr: str
    rate: str
    #: The veth end in this namespace (its tx counter: bytes sent towards the server).
    host_if: str = ""


@contextlib.contextmanager
def limited_link(rate: str = "100mbit") -> Iterator[Link]:
    """A network namespace reached over a veth pair shaped to ``rate`` both ways."""
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"mqib{tag}", f"mqibh{tag}", f"mqibn{tag}"
    octet = 1 + os.getpid() % 250
    link = Link(ns, f"10.211.{octet}.1", f"10.211.{octet}.2", rate, host_if)
    shape = TBF.format(rate=rate).split()
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
        ["ip", "link", "set", ns_if, "netns", ns],
        ["ip", "addr", "add", f"{link.host_addr}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", ns, "addr", "add", f"{link.ns_addr}/30", "dev", ns_if],
        ["ip", "-n", ns, "link", "set", ns_if, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["tc", "qdisc", "add", "dev", host_if, "root", *shape],
        ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", ns_if, "root", *shape],
    ]
    try:
        for step in steps:
            done = _run(*step, check=False)
            if done.returncode != 0:
                raise SystemExit(
                    f"link set-up failed: {' '.join(step)}: {done.stderr.strip()}"
                    + (" (no tbf qdisc: modprobe sch_tbf)" if step[0] == "tc" else "")
                )
        yield link
    finally:
        pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:  # only processes inside our own namespace
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run("ip", "netns", "del", ns, check=False)
        _run("ip", "link", "del", host_if, check=False)  # gone with the namespace, normally


@dataclass(frozen=True)
class Sshd:
    """A running sshd and what a client needs to reach it."""

    addr: str
    port: int
    key: Path
    known_hosts: Path
    conf: Path

    def ssh_opts(self) -> list[str]:
        """Options for ssh/scp: our key, strict checking against our known_hosts."""
        return [
            "-i",
            str(self.key),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
        ]

    def host_entry(self, remote_base: Path, scheduler: dict[str, object]) -> dict[str, object]:
        """A ``hosts:`` entry of the communicator's config reaching this sshd."""
        return {
            "transport": "ssh",
            "hostname": self.addr,
            "port": self.port,
            "user": "root",
            "key_file": str(self.key),
            "known_hosts": str(self.known_hosts),
            "scheduler": scheduler,
            "remote_base": str(remote_base),
        }


_CONFIG = """Port {port}
ListenAddress {addr}
HostKey {conf}/host_ed25519
PidFile {conf}/sshd.pid
AuthorizedKeysFile {conf}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
"""


def free_port() -> int:
    """A TCP port nothing listens on here right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def sshd(conf: Path, addr: str = "127.0.0.1", netns: str | None = None) -> Iterator[Sshd]:
    """An sshd on ``addr`` (inside ``netns`` if given) with fresh keys under ``conf``."""
    conf.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    for name in ("host_ed25519", "id_ed25519"):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(conf / name))
    shutil.copy(conf / "id_ed25519.pub", conf / "authorized_keys")
    port = free_port()
    (conf / "sshd_config").write_text(_CONFIG.format(port=port, addr=addr, conf=conf))
    host_key = (conf / "host_ed25519.pub").read_text().split()[:2]
    (conf / "known_hosts").write_text(f"[{addr}]:{port} {' '.join(host_key)}\n")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    cmd = [*prefix, str(SSHD), "-f", str(conf / "sshd_config"), "-E", str(conf / "sshd.log")]
    server = Sshd(addr, port, conf / "id_ed25519", conf / "known_hosts", conf)
    try:
        started = _run(*cmd, check=False)
        if started.returncode != 0:
            raise SystemExit(f"sshd did not start: {started.stderr.strip()}")
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection((addr, port), 0.5):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"sshd did not answer on {addr}:{port} ({conf / 'sshd.log'})")
            time.sleep(0.05)
        yield server
    finally:
        pidfile = conf / "sshd.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)


def ssh_check(server: Sshd) -> None:
    """One ``ssh true``: the key, the known_hosts line and the route all work."""
    _run("ssh", "-p", str(server.port), *server.ssh_opts(), f"root@{server.addr}", "true")
