"""Run a command in a detached tmux session of a fixed size and read its screen."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable

from tests.infra.require import unavailable


class Tmux:
    """One private tmux server (its own socket) with one session running ``command``."""

    def __init__(self, command: str, width: int = 80, height: int = 24) -> None:
        if shutil.which("tmux") is None:
            unavailable("tmux", "not installed (scripts/test.sh installs it)")
        self.socket = f"mqi-{uuid.uuid4().hex[:8]}"
        self._tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        )

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t").stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def alive(self) -> bool:
        return self._tmux("has-session", "-t", "t").returncode == 0

    def wait_screen(self, cond: Callable[[str], bool], what: str, limit_s: float = 30.0) -> str:
        deadline = time.monotonic() + limit_s
        while True:
            text = self.screen()
            if cond(text):
                return text
            assert time.monotonic() < deadline, f"never on screen: {what}\n{text}"
            time.sleep(0.05)

    def close(self) -> None:
        self._tmux("kill-server")
