"""Shared by the stand-in ``pueue`` CLI and ``pueued`` daemon: where the state lives.

The state directory is the directory holding the config file given with ``-c``; without
``-c`` it is ``$PUEUE_STANDIN_DIR``. The config is a tiny ``key: value`` file; the one
key read is ``standin_version: 3`` or ``4`` (default 4), the JSON shape to emulate.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

VERSIONS = {3: "3.4.1", 4: "4.0.0"}


def find_config(argv: list[str]) -> tuple[Path | None, list[str]]:
    """Pull ``-c/--config PATH`` out of ``argv`` (anywhere before ``--``)."""
    rest: list[str] = []
    config: Path | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in ("-c", "--config") and i + 1 < len(argv):
            config = Path(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--config="):
            config = Path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return config, rest


def state_dir(config: Path | None) -> Path:
    if config is not None:
        return config.resolve().parent
    env = os.environ.get("PUEUE_STANDIN_DIR")
    if not env:
        sys.stderr.write("Error: stand-in pueue needs -c <config> or PUEUE_STANDIN_DIR\n")
        raise SystemExit(2)
    return Path(env)


def read_version(config: Path | None) -> int:
    if config is not None and config.exists():
        for line in config.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "standin_version" and value.strip() in {"3", "4"}:
                return int(value.strip())
    env = os.environ.get("PUEUE_STANDIN_VERSION", "4")
    return 3 if env.strip() == "3" else 4


def socket_path(directory: Path) -> Path:
    return directory / "pueue.socket"
