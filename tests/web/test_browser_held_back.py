"""The web console shows the cases the engine holds back, and why, with hostile text escaped.

A real engine (SQLite, local transport and scheduler) fails one case's retrieval with a
real FileExistsError (tests/service/held_case.py); headless Chromium reads the pages of
a real uvicorn serving the console's own communicator.
"""

from __future__ import annotations

import re

from tests.service.held_case import (
    ERROR_START,
    HOSTILE_NAME_SHOWN,
    HOSTILE_RESULTS_SHOWN,
    hold_back_a_case,
)

from .conftest import Browser, Workspace, console_app, serve, wait_for


def test_overview_and_case_page_show_a_held_back_case(ws: Workspace, browser: Browser) -> None:
    engine, case_id = hold_back_a_case(ws)
    next_at = engine.case(case_id).next_attempt_at
    assert next_at is not None
    _, app = console_app(ws, engine.config)
    d = browser.driver
    with serve(app) as base:
        d.get(f"{base}/")
        row = wait_for(lambda: browser.text(f"#held-back tr[data-case='{case_id}']"), "held row")
        browser.shot("overview-held-back")
        cells = row.split("\t")
        assert cells[:4] == [str(case_id), HOSTILE_NAME_SHOWN, "retrieving", "1 local failure"]
        assert re.fullmatch(rf"{next_at:%Y-%m-%d %H:%M:%S} \(in 9m\d\ds\)", cells[4]), cells
        assert cells[5].startswith(ERROR_START), cells
        assert cells[5].endswith(f"{ws.root}/{HOSTILE_RESULTS_SHOWN}"), cells
        # The live fragment keeps it (htmx swaps it every refresh).
        wait_for(lambda: "in 9m" in browser.text("#held-back"), "still shown after a refresh")
        # Nowhere raw: not in the held-back table, not in the engine's audit notes.
        assert "\x1b" not in d.execute_script("return document.body.innerText")

        d.get(f"{base}/cases/{case_id}")
        held = wait_for(lambda: browser.text("#case-held"), "the case page's held-back line")
        browser.shot("case-held-back")
        assert held.startswith(f"1 local failure, next attempt {next_at:%Y-%m-%d %H:%M:%S} UTC")
        assert ERROR_START in held and HOSTILE_RESULTS_SHOWN in held, held
        assert HOSTILE_NAME_SHOWN in browser.text("h1")
        d.get(f"{base}/cases")
        listed = wait_for(lambda: browser.text("#cases tr[data-case]"), "the case list")
        assert HOSTILE_NAME_SHOWN in listed
        assert "\x1b" not in d.execute_script("return document.body.innerText")
