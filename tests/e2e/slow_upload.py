"""An engine process whose upload is surely under way when the test acts on it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

#: The engine's progress callback: about 10 MiB/s (a slow link, so the upload lasts
#: seconds); prints ``uploading`` once the first bytes went out.
SLOW_PROGRESS = textwrap.dedent(
    """
    import sys
    import time
    said = []

    def progress(label, done, total):
        if 0 < done < total:
            if not said:
                said.append(1)
                print("uploading", flush=True)
            time.sleep(0.1)
    """
)


def start_uploading(body: str, config_path: Path) -> subprocess.Popen[str]:
    """Run ``body`` (``sys.argv[1]`` is ``config_path``; ``progress`` is defined) in a new
    Python process; return it once its upload is under way."""
    engine = subprocess.Popen(
        [sys.executable, "-c", SLOW_PROGRESS + textwrap.dedent(body), str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert engine.stdout is not None
    line = engine.stdout.readline().strip()
    if line != "uploading":
        engine.kill()
        _, err = engine.communicate(timeout=30)
        raise AssertionError(f"the engine never started uploading ({line!r}): {err}")
    return engine
