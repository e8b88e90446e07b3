"""The web console in headless Chromium, beside a real engine on the local scheduler.

Each test keeps screenshots of the pages it saw (see ``artifacts`` in conftest).
"""

from __future__ import annotations

import shlex

from mqi_communicator import CaseState, EvidenceKind, GpuState

from .conftest import Browser, Workspace, console_app, engine, serve, wait_for

#: Used to check that a page changed without reloading: a reload loses it.
MARK = "window.__mqiNoReload = 'still here'"
MARKED = "return window.__mqiNoReload === 'still here'"


#: What the gated job prints, once before the gate and once after (its job log).
LOG_BEFORE = "MOQUI: beam 1/2 <b>simulated</b>"
LOG_AFTER = "MOQUI: dose written"


def gated(ws: Workspace) -> str:
    """A stand-in job that logs a line, runs until the test creates the gate file, logs."""
    gate = shlex.quote(str(ws.root / "gate"))
    return (
        f"echo {shlex.quote(LOG_BEFORE)}; while [ ! -f {gate} ]; do sleep 0.05; done; "
        f"mkdir -p output; echo dose > output/d; echo {shlex.quote(LOG_AFTER)}"
    )


def test_engine_progress_appears_live_without_reload(ws: Workspace, browser: Browser) -> None:
    config = ws.config(command=gated(ws))
    runner = ws.communicator(config)
    _, app = console_app(ws, config)
    d = browser.driver
    with serve(app) as base, engine(runner):
        d.get(f"{base}/cases")
        d.execute_script(MARK)
        assert "no case matches" in browser.text("#cases")
        ws.drop_case("patient 07")
        wait_for(lambda: "patient 07" in browser.text("#cases"), "the new case listed")
        wait_for(lambda: "running" in browser.text("#cases tr[data-case]"), "shown running")
        assert d.execute_script(MARKED), "the list page was reloaded"
        browser.shot("cases-running")
        browser.click("#cases tr[data-case] td:nth-child(2) a")
        wait_for(lambda: browser.text("#case-state") == "running", "detail shows running")
        # The job's own output, read through the host's transport (markup shown as text).
        wait_for(lambda: LOG_BEFORE in browser.text("#log-text"), "the running job's log")
        d.execute_script(MARK)
        (ws.root / "gate").touch()
        wait_for(lambda: browser.text("#case-state") == "completed", "detail shows completed")
        wait_for(lambda: LOG_AFTER in browser.text("#log-text"), "the log's new line, live")
        assert d.execute_script(MARKED), "the case page was reloaded"
        assert "retrieving → completed" in browser.text("#case-live .transitions")
        assert "observed_terminal" in browser.text("#case-live .transitions")
        (case,) = runner.cases()
        assert case.status is CaseState.COMPLETED
        assert case.remote_dir is not None and case.remote_dir in browser.text("#case-live")
        d.refresh()  # the result files are listed on a full render
        assert "d" in browser.text("#results") and "bytes" in browser.text("#results")
        browser.shot("case")
        d.get(f"{base}/")
        wait_for(lambda: browser.text(".tile[data-state=completed] .n") == "1", "tile count")
        assert "case 1" in browser.text("#overview-live .transitions")
        browser.shot("overview")


def test_cancel_and_gpu_offline_go_through_confirmation(ws: Workspace, browser: Browser) -> None:
    config = ws.config(command="sleep 300")
    runner = ws.communicator(config)
    _, app = console_app(ws, config)
    d = browser.driver
    with serve(app) as base, engine(runner):
        ws.drop_case("to cancel")
        wait_for(lambda: [c for c in runner.cases() if c.status is CaseState.RUNNING], "running")
        (case,) = runner.cases()
        d.get(f"{base}/cases/{case.id}")
        browser.click("#action-cancel")
        wait_for(lambda: "Cancel case" in browser.text("h1"), "confirmation page")
        browser.shot("confirm")
        assert runner.case(case.id).cancel_requested is False, "acted before confirmation"
        browser.click("#confirm")
        wait_for(lambda: "cancel requested" in browser.text("#result"), "result shown")
        browser.shot("result")
        wait_for(lambda: runner.case(case.id).status is CaseState.CANCELLED, "cancelled by engine")
        cancel = [t for t in runner.history(case_id=case.id) if t.trigger == "cancel"]
        assert len(cancel) == 1 and cancel[0].to_state == "cancelled"
        d.get(f"{base}/gpus/local/gpu0")
        wait_for(lambda: browser.text("#gpu-state") == "available", "GPU freed")
        browser.click("#action-offline")
        browser.click("#confirm")
        wait_for(lambda: "is offline" in browser.text("#result"), "offline result shown")
        (gpu,) = runner.gpus()
        assert gpu.status is GpuState.OFFLINE and gpu.offline_requested
        moves = [t for t in runner.history(gpu_name=gpu.name) if t.trigger == "take_offline"]
        assert len(moves) == 1 and (moves[0].from_state, moves[0].to_state) == (
            "available",
            "offline",
        )


def test_zombie_is_marked_live_with_the_case_it_quarantines(
    ws: Workspace, browser: Browser
) -> None:
    # TERM ignored and a kill window shorter than the SIGKILL grace: the engine cannot
    # prove the job gone, so the GPU turns zombie (and stays so for ~60 s).
    config = ws.config(
        command="trap '' TERM; sleep 300",
        engine={"job_timeout_s": 1, "kill_confirm_s": 0.5},
        scheduler={"kill_grace_s": 60},
    )
    runner = ws.communicator(config)
    _, app = console_app(ws, config)
    d = browser.driver
    with serve(app) as base, engine(runner):
        d.get(f"{base}/")
        d.execute_script(MARK)
        ws.drop_case("stuck job")
        wait_for(lambda: browser.text("#gpus tr.gpu-zombie"), "zombie row shown")
        assert d.execute_script(MARKED), "the overview was reloaded"
        (case,) = runner.cases()
        row = browser.text("#gpus tr.gpu-zombie")
        assert "zombie" in row and f"quarantines case {case.id}" in row
        browser.shot("overview-zombie")
        d.get(f"{base}/gpus/local/gpu0")
        banner = browser.text("#zombie-banner")
        assert f"case {case.id} (stuck job)" in banner and str(case.label) in banner
        assert str(case.job_id) in banner
        browser.shot("gpu-zombie")

        # The operator's way out, on the page: checks first, a reason, an explicit tick.
        from selenium.webdriver.common.by import By  # only where the browser fixture ran

        browser.click("#action-release")
        wait_for(lambda: "Release zombie" in browser.text("h1"), "release confirmation")
        assert str(case.label) in browser.text("#checks")
        browser.shot("release-confirm")
        assert runner.gpus()[0].status is GpuState.ZOMBIE, "released before confirmation"
        d.find_element(By.ID, "reason").send_keys("host reinstalled; no process left")
        d.find_element(By.ID, "job-gone").click()
        browser.click("#confirm")
        wait_for(lambda: "released on the word of web:127.0.0.1" in browser.text("#result"), "done")
        browser.shot("release-result")
        (gpu,) = runner.gpus()
        assert gpu.status is GpuState.AVAILABLE
        (row,) = [t for t in runner.history(gpu_name=gpu.name) if t.trigger == "operator_release"]
        assert row.evidence is not None
        assert row.evidence.kind is EvidenceKind.OPERATOR_ATTESTED
        assert row.evidence.actor == "web:127.0.0.1"
        assert row.evidence.detail == "host reinstalled; no process left"
        assert row.evidence.label == case.label
