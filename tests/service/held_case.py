"""A case the engine holds back after a real local fault, named and placed to be hostile.

Its retrieval fails with a real ``FileExistsError``: every folder its results could go
to is already taken by folders that are not its own (see test_fault_isolation.py). The
case name and the results folder hold escape sequences, so the error the engine keeps
(``no free results folder for case N in <results_dir>``) holds one too: every view must
show them as ``\\x1b`` text, never hand them to a terminal or a page raw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mqi_communicator import Communicator
from mqi_communicator.engine.results_place import candidate_folders

from .conftest import Workspace, tick_until

#: Recolours the terminal if shown raw.
HOSTILE_NAME = "evil\x1b[31mRED"
HOSTILE_NAME_SHOWN = "evil\\x1b[31mRED"
#: Reverse video if shown raw; it ends up inside the error text.
HOSTILE_RESULTS = "res\x1b[7mults"
HOSTILE_RESULTS_SHOWN = "res\\x1b[7mults"
ERROR_START = "retrieving: FileExistsError: no free results folder for case"


def block_results_folders(results: Path, name: str, case_id: int) -> None:
    """Take every folder case ``case_id``'s results could go to (none stamped as its)."""
    for folder in candidate_folders(results, name, case_id):
        folder.mkdir(parents=True)


def hold_back_a_case(ws: Workspace, backoff_s: float = 600.0) -> tuple[Communicator, int]:
    """Tick a real engine until its one case failed retrieval locally once.

    The next attempt is ``backoff_s`` away, so the case stays held back while a view
    is looked at.
    """
    config = ws.config(
        command="mkdir -p output; echo dose > output/dose.txt",
        results_dir=HOSTILE_RESULTS,
        engine={"max_local_failures": 5, "backoff": {"base_s": backoff_s, "cap_s": backoff_s}},
    )
    (ws.root / HOSTILE_RESULTS).mkdir()
    comm = ws.communicator(config)
    ws.drop_case(HOSTILE_NAME)
    tick_until(comm, lambda: len(comm.cases()) == 1, "the hostile case registered")
    (case,) = comm.cases()
    # Results are placed only after a later tick sees the job end: block them all now.
    block_results_folders(ws.root / HOSTILE_RESULTS, HOSTILE_NAME, case.id)
    tick_until(comm, lambda: comm.case(case.id).local_failures == 1, "retrieval failed locally")
    return comm, case.id


def config_file(
    ws: Workspace, comm: Communicator, results_dir: str = HOSTILE_RESULTS, **extra: Any
) -> Path:
    """The workspace's config as a file, for the CLI (the engine's database)."""
    data = {
        "watch_dir": "cases",
        "results_dir": results_dir,
        "database_url": comm.config.database_url,
        "command": ["true"],
        "hosts": {
            "local": {"transport": "local", "scheduler": {"kind": "local"}, "remote_base": "remote"}
        },
        "gpus": [{"name": "local/gpu0", "host": "local"}],
        **extra,
    }
    path = ws.root / "mqi.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
