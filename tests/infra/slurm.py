"""Pytest plugin: a real Slurm (munged + slurmctld + slurmd) on loopback, started lazily.

The session fixture ``slurm`` runs ``slurm_up.sh`` (next to this file) into a fresh
``/tmp/mqi-slurm-*`` directory with free ports, so concurrent test sessions do not collide,
and tears it down with ``slurm_down.sh``. Overrides: ``MQI_SLURM_ROOT``,
``MQI_SLURM_CTLD_PORT``, ``MQI_SLURM_SLURMD_PORT``, ``MQI_SLURM_MIN_JOB_AGE``.
When the packages are missing, we are not root, or bring-up fails, tests needing it skip
(or fail under CI) through :func:`tests.infra.require.unavailable`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.require import unavailable

__all__ = ["SlurmCluster", "slurm"]

_HERE = Path(__file__).resolve().parent
_NEEDED = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")
_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _which(exe: str) -> str | None:
    return shutil.which(exe, path=_SBIN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SlurmCluster:
    """A running loopback Slurm.

    Attributes:
        root: Directory holding config, state, logs and munge key.
        slurm_conf: The config file; clients need it in ``SLURM_CONF``.
        hostname: The single node's name (the short hostname).
        ctld_port: slurmctld's port.
        partition: The (default) partition.
        env: Environment for client commands (``{"SLURM_CONF": ...}``).
    """

    root: Path
    slurm_conf: Path
    hostname: str
    ctld_port: int
    partition: str = "debug"
    env: dict[str, str] = field(default_factory=dict)

    def client(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (squeue, scontrol ...) against this cluster."""
        return subprocess.run(
            list(argv),
            env={**os.environ, "PATH": _SBIN, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the daemons' logs, for failure messages."""
        out = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "munged.log"):
            path = self.root / "log" / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"== {name}\n" + "\n".join(text))
        return "\n".join(out)

    def _ctld_pid(self) -> int | None:
        path = self.root / "slurmctld.fgpid"
        return int(path.read_text().strip()) if path.exists() else None

    def stop_controller(self) -> None:
        """Stop slurmctld (jobs keep running under slurmd), waiting until it has exited."""
        pid = self._ctld_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def start_controller(self, *, clean: bool = False) -> None:
        """Start slurmctld; ``clean`` wipes its saved state (it forgets every job)."""
        exe = _which("slurmctld") or "slurmctld"
        flags = "-D -c" if clean else "-D"
        # Started from a throwaway shell, like slurm_up.sh does, so it is reparented to
        # init: a child of pytest would linger as a zombie that `kill -0` sees as alive.
        out = subprocess.run(
            [
                "bash",
                "-c",
                f'setsid "$1" {flags} >>"$2" 2>&1 </dev/null & echo $!',
                "start-slurmctld",
                exe,
                str(self.root / "log" / "slurmctld.out"),
            ],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        (self.root / "slurmctld.fgpid").write_text(out.stdout.strip() + "\n")
        self.wait_ready()

    def restart_controller(self, *, clean: bool) -> None:
        """Stop and start slurmctld; ``clean=True`` makes it forget every job."""
        self.stop_controller()
        self.start_controller(clean=clean)

    def set_min_job_age(self, seconds: int) -> None:
        """Change ``MinJobAge`` live (``scontrol reconfigure``): how long finished jobs stay.

        A finished job is purged within about ``seconds + min(seconds, 60)`` s.
        """
        conf = self.slurm_conf.read_text()
        lines = [ln for ln in conf.splitlines() if not ln.startswith("MinJobAge=")]
        self.slurm_conf.write_text("\n".join([*lines, f"MinJobAge={seconds}"]) + "\n")
        res = self.client("scontrol", "reconfigure")
        if res.returncode != 0:
            raise RuntimeError(f"scontrol reconfigure failed: {res.stderr}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the controller answers and the node can run jobs."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            res = self.client("sinfo", "-h", "-n", self.hostname, "-o", "%T", timeout=30)
            state = res.stdout.strip()
            if res.returncode == 0 and state in {"idle", "mixed", "allocated"}:
                return
            time.sleep(0.1)
        raise RuntimeError(f"slurm not ready (node state {state!r}):\n{self.log_tail()}")


def _bring_up() -> Iterator[SlurmCluster]:
    if os.name != "posix":
        unavailable("slurm", "needs Linux")
    missing = [exe for exe in _NEEDED if _which(exe) is None]
    if missing:
        unavailable(
            "slurm",
            f"missing {', '.join(missing)}; install the Debian packages "
            "munge slurmctld slurmd slurm-client",
        )
    if os.geteuid() != 0:
        unavailable("slurm", "the loopback Slurm must be started as root")
    root = Path(os.environ.get("MQI_SLURM_ROOT") or tempfile.mkdtemp(prefix="mqi-slurm-"))
    ctld_port = int(os.environ.get("MQI_SLURM_CTLD_PORT") or _free_port())
    env = {
        **os.environ,
        "PATH": _SBIN,
        "MQI_SLURM_ROOT": str(root),
        "MQI_SLURM_CTLD_PORT": str(ctld_port),
        "MQI_SLURM_SLURMD_PORT": os.environ.get("MQI_SLURM_SLURMD_PORT") or str(_free_port()),
    }
    down = [str(_HERE / "slurm_down.sh")]
    try:
        up = subprocess.run(
            ["bash", str(_HERE / "slurm_up.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        subprocess.run(down, env=env, check=False, timeout=120)
        unavailable("slurm", f"slurm_up.sh timed out: {err}")
    if up.returncode != 0:
        subprocess.run(down, env=env, check=False, timeout=120)
        unavailable("slurm", f"slurm_up.sh failed (exit {up.returncode}):\n{up.stderr[-3000:]}")
    cluster = SlurmCluster(
        root=root,
        slurm_conf=root / "slurm.conf",
        hostname=socket.gethostname().split(".")[0],
        ctld_port=ctld_port,
        env={"SLURM_CONF": str(root / "slurm.conf")},
    )
    try:
        yield cluster
    finally:
        subprocess.run(down, env=env, check=False, timeout=120)


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A loopback Slurm for the whole session, started on first use."""
    yield from _bring_up()
