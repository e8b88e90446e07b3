"""A real end-to-end workspace: a YAML config file loaded by the real loader, a real
Communicator on SQLite, and case folders of small DICOM-like files dropped into the
watch folder.

The stand-in job (:data:`JOB`) writes two result files a test can check exactly:
``output/inputs.sha256`` (hashes of the inputs, predictable from the case folder) and
``output/dose.bin`` (random bytes, compared with the copy left in the remote folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqi_communicator import CaseRecord, CaseState, Communicator, Config, load_config
from tests.infra.pueue import PueueStandin, pueue_daemon
from tests.infra.sshd import SshServer

#: The stand-in simulation: hashes its inputs and writes a random "dose" file.
JOB = (
    "mkdir -p output && "
    "find . -path ./.mqi -prune -o -path ./output -prune -o -type f -print "
    '| LC_ALL=C sort | while IFS= read -r f; do sha256sum "$f"; done > output/inputs.sha256 && '
    "head -c 4096 /dev/urandom > output/dose.bin"
)


def dicom_bytes(tag: str, size: int = 2048) -> bytes:
    """A small DICOM-like file: 128-byte preamble, ``DICM``, then deterministic payload."""
    body = hashlib.sha256(tag.encode()).digest() * (size // 32 + 1)
    return b"\0" * 128 + b"DICM" + body[:size]


def expected_inputs_sha256(case_dir: Path) -> str:
    """What :data:`JOB` writes into ``output/inputs.sha256`` for ``case_dir``."""
    files = sorted(
        (p.relative_to(case_dir).as_posix() for p in case_dir.rglob("*") if p.is_file()),
        key=lambda s: ("./" + s).encode(),
    )
    lines = [
        f"{hashlib.sha256((case_dir / rel).read_bytes()).hexdigest()}  ./{rel}\n" for rel in files
    ]
    return "".join(lines)


@dataclass
class E2E:
    """One test's workspace (all under ``root``)."""

    root: Path
    comms: list[Communicator] = field(default_factory=list)

    @property
    def watch(self) -> Path:
        return self.root / "watch"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def remote_base(self) -> Path:
        return self.root / "remote"

    def write_config(
        self,
        hosts: dict[str, Any],
        gpus: list[dict[str, Any]],
        *,
        command: str = JOB,
        engine: dict[str, Any] | None = None,
        name: str = "mqi.yaml",
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write a YAML config file (relative paths, as a user writes them).

        ``extra``: more top-level sections (``hooks``, ...).
        """
        data: dict[str, Any] = {
            "watch_dir": "watch",
            "results_dir": "results",
            "database_url": "sqlite:///" + (self.root / "mqi.db").as_posix(),
            "command": ["sh", "-c", command],
            "intake": {"quiescence_s": 0.3, "scan_interval_s": 2},
            "engine": {
                "poll_interval_s": 0.3,
                "kill_confirm_s": 30,
                "backoff": {"base_s": 0.3, "factor": 2, "cap_s": 2},
                # The tests compare results with the remote copy after completion.
                "remote_retention": "keep",
                **(engine or {}),
            },
            "hosts": hosts,
            "gpus": gpus,
            **(extra or {}),
        }
        self.watch.mkdir(exist_ok=True)
        path = self.root / name
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), "utf-8")
        return path

    def load(self, path: Path) -> Config:
        # env={}: stray MQI__* variables of the developer's shell must not leak in.
        return load_config(path, env={})

    def communicator(self, config: Config, **kwargs: Any) -> Communicator:
        comm = Communicator(config, **kwargs)
        self.comms.append(comm)
        return comm

    def drop_case(self, name: str, slices: int = 3) -> Path:
        """Write a case folder (CT slices, a plan, a log) into the watch folder."""
        case = self.watch / name
        (case / "ct").mkdir(parents=True)
        for i in range(slices):
            (case / "ct" / f"CT.{i:03d}.dcm").write_bytes(dicom_bytes(f"{name}/ct{i}"))
        (case / "RTPLAN.dcm").write_bytes(dicom_bytes(f"{name}/plan", 512))
        (case / "treatment.log").write_text(f"case {name}\n", encoding="utf-8")
        return case

    def kill_leftover_jobs(self) -> None:
        for pgid_file in self.remote_base.glob("*.mqi/pgid"):
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.killpg(int(pgid_file.read_text().strip()), signal.SIGKILL)


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[E2E]:
    space = E2E(tmp_path)
    space.remote_base.mkdir()
    yield space
    for comm in space.comms:
        comm.close()
    space.kill_leftover_jobs()


@pytest.fixture
def pueue() -> Iterator[PueueStandin]:
    """A stand-in pueued (v4 JSON shape), torn down with every task group it spawned."""
    with pueue_daemon(4) as standin:
        yield standin


@pytest.fixture
def live_sshd(sshd: SshServer) -> Iterator[SshServer]:
    """The session sshd, running; restarted afterwards if a test stopped it."""
    sshd.start()
    yield sshd
    sshd.start()


def ssh_host(
    sshd: SshServer, scheduler: dict[str, Any], remote_base: Path, **extra: Any
) -> dict[str, Any]:
    """A host entry reaching the loopback sshd with strict host-key checking."""
    return {
        "transport": "ssh",
        "hostname": sshd.host,
        "port": sshd.port,
        "user": sshd.user,
        "key_file": str(sshd.key_path),
        "known_hosts": str(sshd.known_hosts),
        "accept_new_host_key": False,
        "connect_timeout_s": 3,
        "scheduler": scheduler,
        "remote_base": str(remote_base),
        **extra,
    }


def pueue_ssh_config(e2e: E2E, sshd: SshServer, pueue: PueueStandin, **kwargs: Any) -> Path:
    """A config file: one GPU = the stand-in's ``default`` group, over SSH."""
    scheduler = {
        "kind": "pueue",
        "pueue_command": pueue.command,
        "kill_grace_s": 1,
        "timeout_s": 20,
    }
    return e2e.write_config(
        {"gpu-server": ssh_host(sshd, scheduler, e2e.remote_base)},
        [{"name": "gpu-server/gpu0", "host": "gpu-server", "pueue_group": "default"}],
        **kwargs,
    )


def tick_until(
    comm: Communicator, cond: Callable[[], bool], what: str, limit_s: float = 60.0
) -> None:
    """Tick with the real clock until ``cond`` holds; fail (never hang) past ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            states = [(c.id, c.name, c.status.value, c.failure_reason) for c in comm.cases()]
            gpus = [(g.name, g.status.value) for g in comm.gpus()]
            raise AssertionError(f"never happened: {what}; cases={states} gpus={gpus}")
        comm.tick()
        time.sleep(0.05)


def case_named(comm: Communicator, name: str) -> CaseRecord | None:
    return next((c for c in comm.cases() if c.name == name), None)


def reaches(comm: Communicator, name: str, *states: CaseState) -> Callable[[], bool]:
    def check() -> bool:
        case = case_named(comm, name)
        return case is not None and case.status in states

    return check


def assert_results_verified(e2e: E2E, comm: Communicator, name: str) -> None:
    """The case completed, and its results folder holds exactly what the job wrote."""
    case = case_named(comm, name)
    assert case is not None and case.status is CaseState.COMPLETED, case
    result = e2e.results / name
    assert (result / "inputs.sha256").read_text("utf-8") == expected_inputs_sha256(e2e.watch / name)
    assert case.remote_dir is not None
    remote_out = Path(case.remote_dir) / "output"  # loopback: the "remote" is this machine
    dose = (result / "dose.bin").read_bytes()
    assert len(dose) == 4096 and dose == (remote_out / "dose.bin").read_bytes()
    assert sorted(p.name for p in result.iterdir()) == sorted(
        [".mqi-result.json", "dose.bin", "inputs.sha256"]
    )
