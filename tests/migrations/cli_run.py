"""Run the real ``mqi-communicator`` console script in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def console_script() -> str:
    """Path of the installed console script (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("mqi-communicator")
    if beside.exists():
        return str(beside)
    found = shutil.which("mqi-communicator")
    assert found, "mqi-communicator is not installed: pip install -e ."
    return found


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``mqi-communicator *args``; MQI_DATABASE_URL is unset unless ``env`` sets it."""
    base = {k: v for k, v in os.environ.items() if k != "MQI_DATABASE_URL"}
    return subprocess.run(
        [console_script(), *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
