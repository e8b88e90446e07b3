"""Engine 1 of the two-engine lease test, as its own process: one tick, a gated upload.

``python -m tests.service.lease_engine_child CONFIG.json`` builds a communicator on the
config (PostgreSQL) whose upload first prints ``uploading <remote dir>`` and then waits
for a line on stdin: ``go`` runs the real upload, ``fail`` raises a transfer error.
After its one tick it prints ``report stale=<n> claimed=<n> submitted=<n>`` and exits.
The engine's log goes to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

from mqi_communicator import Communicator
from mqi_communicator.config import parse_config
from mqi_communicator.engine.build import build_host
from mqi_communicator.errors import TransferError
from tests.infra.hooked import HookedTransport


def _gate(local_dir: Path, remote_dir: str) -> None:
    print(f"uploading {remote_dir}", flush=True)
    answer = sys.stdin.readline().strip()
    if answer != "go":
        raise TransferError(f"upload of {local_dir.name} broke (told {answer!r})")


def main(config_file: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    data = json.loads(Path(config_file).read_text(encoding="utf-8"))
    config = parse_config(data, base_dir=Path(config_file).parent, env={})
    real = build_host("local", config.hosts["local"])
    host = dataclasses.replace(real, transport=HookedTransport(real.transport, _gate))
    with Communicator(config, hosts={"local": host}, watch=False) as comm:
        print(f"engine {comm.reconciler.engine_id}", flush=True)
        report = comm.tick()
    print(
        f"report stale={report.stale} claimed={report.claimed} submitted={report.submitted}",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1])
