"""Helpers of the kill -9 crash test: the workspace, a read-only DB watcher, the checks."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mqi_communicator import CaseState, GpuState
from mqi_communicator.persistence import Store

from .conftest import dicom_bytes, expected_inputs_sha256

GPUS = ("local/gpu0", "local/gpu1")

#: The stand-in job: a failing case exits 3; the others sleep a little and write a few
#: MB of results (so retrieval takes long enough to be interrupted).
JOB = (
    "if [ -f fail.flag ]; then echo 'MOQUI: bad plan' >&2; exit 3; fi; "
    "sleep 0.$(od -An -N1 -tu1 /dev/urandom | tr -d ' ' | cut -c1); "
    "mkdir -p output && find . -path ./.mqi -prune -o -path ./output -prune -o -type f -print "
    '| LC_ALL=C sort | while IFS= read -r f; do sha256sum "$f"; done > output/inputs.sha256 && '
    "head -c 6000000 /dev/urandom > output/dose.bin"
)

TERMINAL = {CaseState.COMPLETED.value, CaseState.FAILED.value, CaseState.CANCELLED.value}


def console_script() -> list[str]:
    """The installed ``mqi-communicator`` entry point, or ``python -c`` as a fallback."""
    import shutil
    import sys

    exe = Path(sys.executable).parent / "mqi-communicator"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mqi-communicator")
    if found:
        return [found]
    return [sys.executable, "-c", "from mqi_communicator.cli import main; main()"]


@dataclass
class CrashWorkspace:
    """One crash-test run: its folders, config, and the engine processes it started."""

    root: Path
    #: The ``hosts.local`` entry (default: local transport + local scheduler).
    host: dict[str, Any] | None = None
    #: Extra keys of every GPU entry (e.g. ``pueue_group``).
    gpu_keys: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.root / "mqi.db"

    @property
    def config(self) -> Path:
        return self.root / "mqi.yaml"

    @property
    def watch(self) -> Path:
        return self.root / "watch"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def write_config(self) -> None:
        for d in ("watch", "results", "remote", "logs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        data = {
            "watch_dir": "watch",
            "results_dir": "results",
            "database_url": "sqlite:///" + self.db.as_posix(),
            "command": ["sh", "-c", JOB],
            "intake": {"quiescence_s": 0.3, "scan_interval_s": 1},
            "engine": {
                "poll_interval_s": 0.2,
                "kill_confirm_s": 60,
                # Kills during upload requeue a case with attempt + 1: never run out here.
                "max_attempts": 50,
                "backoff": {"base_s": 0.2, "factor": 2, "cap_s": 1},
                # The checks compare results with the remote copy after completion.
                "remote_retention": "keep",
            },
            "log": {"file": "logs/run.log", "level": "INFO"},
            "hosts": {
                "local": self.host
                or {
                    "transport": "local",
                    "scheduler": {"kind": "local", "kill_grace_s": 1},
                    "remote_base": "remote",
                }
            },
            "gpus": [
                {"name": g, "host": "local", "cuda_devices": str(i), **self.gpu_keys}
                for i, g in enumerate(GPUS)
            ],
        }
        self.config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def drop_case(self, name: str, *, failing: bool = False, mb: int = 4) -> Path:
        """A case of ``mb`` 1 MB CT slices (big enough for uploads to be caught)."""
        staging = self.root / ".drop" / name  # written aside, then moved in whole
        (staging / "ct").mkdir(parents=True)
        for i in range(mb):
            (staging / "ct" / f"CT.{i:03d}.dcm").write_bytes(dicom_bytes(f"{name}/{i}", 1 << 20))
        (staging / "RTPLAN.dcm").write_bytes(dicom_bytes(f"{name}/plan", 4096))
        if failing:
            (staging / "fail.flag").write_text("")
        target = self.watch / name
        staging.rename(target)
        return target

    def start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MQI")}
        out = (self.root / "logs" / f"engine{len(self.procs)}.out").open("wb")
        proc = subprocess.Popen(
            [*console_script(), "run", "--quiet", "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=60)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for pgid_file in (self.root / "remote").glob("*.mqi/pgid"):
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.killpg(int(pgid_file.read_text().strip()), signal.SIGKILL)


class DbWatcher:
    """Read-only look at the engine's SQLite file while the engine writes it."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None

    def _c(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.db.exists():
                return None
            try:
                self._conn = sqlite3.connect(
                    f"file:{self.db}?mode=ro", uri=True, timeout=1, isolation_level=None
                )
            except sqlite3.Error:
                return None
        return self._conn

    def cases(self) -> list[tuple[int, str, int]]:
        """(id, status, progress) of every case; [] while the schema is not there yet."""
        conn = self._c()
        if conn is None:
            return []
        try:
            return list(conn.execute("SELECT id, status, progress FROM cases ORDER BY id"))
        except sqlite3.Error:
            return []

    def check_claims(self) -> None:
        """While no engine runs: every assigned GPU belongs to one live case, and back."""
        conn = self._c()
        assert conn is not None
        gpus = list(conn.execute("SELECT name, status, assigned_case_id FROM gpu_resources"))
        cases = dict(conn.execute("SELECT id, status FROM cases"))
        holders = [c for n, st, c in gpus if st == GpuState.ASSIGNED.value]
        assert len(holders) == len(set(holders)), f"one case holds two GPUs: {gpus}"
        for name, status, case_id in gpus:
            if status == GpuState.ASSIGNED.value:
                assert cases.get(case_id) in ("submitting", "running"), (name, case_id, cases)
            else:
                assert case_id is None, (name, status, case_id)
        for case_id, status in cases.items():
            if status in ("submitting", "running"):
                assert case_id in holders, f"case {case_id} {status} without its GPU: {gpus}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def phase_of(status: str, progress: int) -> str | None:
    """The engine phase a case row shows: upload, submit, running, retrieve."""
    if status == "submitting":
        return "upload" if progress < 30 else "submit"
    if status == "running":
        return "running"
    if status == "retrieving":
        return "retrieve"
    return None


def wait_for(check: Callable[[], bool], limit_s: float, interval: float = 0.002) -> bool:
    """Poll ``check`` until it holds or ``limit_s`` passes."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def check_gpu_audit(store: Store) -> int:
    """Replay every GPU transition: continuity, and never two cases on one GPU at once.

    Returns the number of GPU assignments seen.
    """
    state: dict[str, tuple[str, int | None]] = {}
    assigns = 0
    for row in store.history():
        if row.entity != "gpu" or row.gpu_name is None:
            continue
        name = row.gpu_name
        if name not in state:
            assert row.from_state == "-" and row.trigger == "add", row
            state[name] = (row.to_state, None)
            continue
        current, owner = state[name]
        assert row.from_state == current, (
            f"{name}: row {row.id} from {row.from_state}, was {current}"
        )
        if row.to_state == GpuState.ASSIGNED.value and current != GpuState.ASSIGNED.value:
            assert current == GpuState.AVAILABLE.value and owner is None, (
                f"{name} claimed for case {row.case_id} while {current} for case {owner}"
            )
            assert row.case_id is not None
            owner = row.case_id
            assigns += 1
        elif row.to_state != GpuState.ASSIGNED.value:
            owner = None
        elif row.case_id is not None:
            assert row.case_id == owner, (
                f"{name}: row {row.id} for case {row.case_id}, owner {owner}"
            )
        state[name] = (row.to_state, owner)
    return assigns


def check_results(ws: CrashWorkspace, store: Store, good: list[str]) -> None:
    """Every folder in results_dir is a complete, verified result of a completed case."""
    by_name = {c.name: c for c in store.list_cases()}
    visible = sorted(p.name for p in ws.results.iterdir() if not p.name.startswith("."))
    assert visible == sorted(good), f"results folders {visible}, expected {sorted(good)}"
    for name in good:
        case = by_name[name]
        folder = ws.results / name
        assert sorted(p.name for p in folder.iterdir()) == [
            ".mqi-result.json",
            "dose.bin",
            "inputs.sha256",
        ], f"{folder}: {sorted(p.name for p in folder.iterdir())}"
        assert (folder / "inputs.sha256").read_text("utf-8") == expected_inputs_sha256(
            ws.watch / name
        )
        assert case.remote_dir is not None
        wrote = (Path(case.remote_dir) / "output" / "dose.bin").read_bytes()
        assert len(wrote) == 6_000_000
        assert (folder / "dose.bin").read_bytes() == wrote, f"{name}: dose.bin differs"
    hidden = {p.name for p in ws.results.iterdir() if p.name.startswith(".")}
    assert hidden <= {".mqi-staging"}, hidden
