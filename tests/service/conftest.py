"""A real workspace for Communicator tests: SQLite, LocalTransport, the local scheduler."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mqi_communicator import CaseRecord, CaseState, Communicator, Config
from mqi_communicator.config import parse_config

#: A stand-in simulation: takes a moment, writes a result file where MOQUI would.
SIM = "sleep 1; mkdir -p output; echo dose > output/dose.txt"


@dataclass
class Workspace:
    root: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    comms: list[Communicator] = field(default_factory=list)

    @property
    def watch(self) -> Path:
        return self.root / "cases"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def remote_base(self) -> Path:
        return self.root / "remote"

    def config(self, command: str = SIM, gpus: int = 1, **sections: Any) -> Config:
        engine = {"poll_interval_s": 0.2, "kill_confirm_s": 30, "backoff": {"base_s": 0.2}}
        engine.update(sections.pop("engine", {}))
        data: dict[str, Any] = {
            "watch_dir": "cases",
            "results_dir": "results",
            "command": ["sh", "-c", command],
            "intake": {"quiescence_s": 0.2, **sections.pop("intake", {})},
            "engine": engine,
            "hosts": {
                "local": {
                    "scheduler": {"kind": "local", **sections.pop("scheduler", {})},
                    "remote_base": "remote",
                }
            },
            "gpus": [{"name": f"local/gpu{i}", "host": "local"} for i in range(gpus)],
            **sections,
        }
        return parse_config(data, base_dir=self.root, env={})

    def communicator(self, config: Config | None = None, **kwargs: Any) -> Communicator:
        comm = Communicator(config or self.config(), **kwargs)
        self.comms.append(comm)
        return comm

    def drop_case(self, name: str, files: dict[str, str] | None = None) -> Path:
        case = self.watch / name
        (case / "ct").mkdir(parents=True)
        for rel, text in (files or {"ct/slice1.dcm": "ct", "plan.dcm": "plan"}).items():
            (case / rel).parent.mkdir(parents=True, exist_ok=True)
            (case / rel).write_text(text, encoding="utf-8")
        return case

    def kill_leftover_jobs(self) -> None:
        for pgid_file in self.remote_base.glob("*.mqi/pgid"):
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.killpg(int(pgid_file.read_text().strip()), signal.SIGKILL)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    space = Workspace(tmp_path)
    yield space
    for comm in space.comms:
        comm.close()
    space.kill_leftover_jobs()


def tick_until(
    comm: Communicator, cond: Callable[[], bool], what: str, limit_s: float = 60.0
) -> None:
    """Tick the engine until ``cond`` holds; fail (not hang) if it never does."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            states = [(c.id, c.name, c.status.value, c.failure_reason) for c in comm.cases()]
            gpus = [(g.name, g.status.value) for g in comm.gpus()]
            raise AssertionError(f"never happened: {what}; cases={states} gpus={gpus}")
        comm.tick()
        time.sleep(0.05)


def status_is(comm: Communicator, case_id: int, *states: CaseState) -> Callable[[], bool]:
    return lambda: comm.case(case_id).status in states


def only_case(comm: Communicator) -> CaseRecord:
    cases = comm.cases()
    assert len(cases) == 1, cases
    return cases[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # watchdog 7's recursive inotify adds a folder created during its own walk twice and
    # warns; the second callback replaces the first (harmless for intake).
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(
                pytest.mark.filterwarnings(
                    "ignore:Callback with id .* already exists:RuntimeWarning"
                )
            )
