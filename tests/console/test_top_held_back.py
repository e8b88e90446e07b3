"""``top`` shows the cases the engine holds back, and why, with hostile text escaped.

A real engine (SQLite, local transport and scheduler) fails one case's retrieval with a
real FileExistsError (tests/service/held_case.py); ``top`` runs in its own process, in a
real terminal (tmux) and piped (``--once``).
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime

from rich.console import Console

from mqi_communicator.console import take_snapshot
from mqi_communicator.console.render import render_screen
from tests.e2e.crash_support import console_script
from tests.service import conftest as service_conftest
from tests.service.conftest import Workspace
from tests.service.held_case import (
    ERROR_START,
    HOSTILE_NAME_SHOWN,
    HOSTILE_RESULTS_SHOWN,
    config_file,
    hold_back_a_case,
)

from .tmux import Tmux

ws = service_conftest.ws  # the same workspace fixture as tests/service's


def test_top_shows_a_held_back_case_its_error_tries_and_next_attempt(ws: Workspace) -> None:
    comm, case_id = hold_back_a_case(ws)
    config = config_file(ws, comm)
    top = [*console_script(), "top", "--config", str(config)]

    # The session's environment says COLUMNS=80 (tmux passes on what its server had):
    # unset, so the console measures the real 240-column terminal.
    tmux = Tmux(" ".join(["env -u COLUMNS -u LINES", *top, "--interval 0.5"]), 240, 30)
    try:
        screen = tmux.wait_screen(lambda s: "HELD BACK" in s, "the held-back section")
    finally:
        tmux.close()
    row = next((line for line in screen.splitlines() if ERROR_START in line), screen)
    # ID, name (escaped: a raw ESC would have recoloured the pane and vanished), tries,
    # the next attempt ~10 minutes away, and the error as the engine kept it.
    shown = rf"^ *{case_id} +{re.escape(HOSTILE_NAME_SHOWN)} +1 +in 9m\d\ds +{ERROR_START}"
    assert re.search(shown, row), screen
    assert re.search(rf"{case_id} +{re.escape(HOSTILE_NAME_SHOWN)} +retrieving", screen), screen

    plain = subprocess.run(top, capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode == 0, plain.stderr
    assert "\x1b" not in plain.stdout
    assert "held back (1)" in plain.stdout
    line = next(x for x in plain.stdout.splitlines() if ERROR_START in x)
    assert HOSTILE_NAME_SHOWN in line and "1 local failure" in line
    when = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \(in 9m\d\ds\)", line)
    assert when is not None, line
    next_at = comm.case(case_id).next_attempt_at
    assert next_at is not None and when.group(1) == f"{next_at:%Y-%m-%d %H:%M:%S}"
    assert f"in {ws.root}/{HOSTILE_RESULTS_SHOWN}" in line, line  # the whole error


def test_the_held_back_section_fits_80x24(ws: Workspace) -> None:
    comm, case_id = hold_back_a_case(ws)
    snap = take_snapshot(comm.store, ["local"], datetime.now(UTC))
    assert [h.case_id for h in snap.held] == [case_id]
    for width, height in ((80, 24), (60, 20)):
        console = Console(width=width, height=height, record=True, color_system=None)
        screen, _ = render_screen(snap, height=height, scroll=0, source="db")
        console.print(screen)
        lines = console.export_text().splitlines()
        assert len(lines) <= height and all(len(line) <= width for line in lines), lines
        text = "\n".join(lines)
        assert "HELD BACK" in text and "retriev" in text and "\x1b" not in text, text
