"""The web console under test: a real uvicorn on 127.0.0.1, a real engine, headless Chromium.

``serve(app)`` runs uvicorn in a thread on a socket bound to a free loopback port.
``engine(comm)`` runs ``Communicator.run_forever`` in a thread (the engine the pages
watch). ``browser`` is Debian's Chromium driven by Selenium through the Debian
chromedriver; it fails the test on any JavaScript console error, and ``shot(name)``
keeps a screenshot under $MQI_ARTIFACTS (else the pytest tmp dir; the path is printed).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from mqi_communicator import Communicator, Config
from mqi_communicator.config import WebConfig
from mqi_communicator.web import create_app
from tests.infra.require import unavailable
from tests.service.conftest import Workspace

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Pages poll this often in the tests (the default is 2 s).
REFRESH_S = 0.5


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def engine(comm: Communicator) -> Iterator[None]:
    """The engine ticking in a thread until the block ends."""
    stop = threading.Event()
    runner = threading.Thread(target=comm.run_forever, args=(stop,), daemon=True)
    runner.start()
    try:
        yield
    finally:
        stop.set()
        comm.request_stop()
        runner.join(timeout=30)
        assert not runner.is_alive(), "the engine did not stop"


def wait_for(cond: Callable[[], Any], what: str, limit_s: float = 30.0) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + limit_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {limit_s} s: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $MQI_ARTIFACTS/web-screens, else a pytest tmp dir."""
    base = os.environ.get("MQI_ARTIFACTS")
    out = Path(base) / "web-screens" if base else tmp_path_factory.mktemp("web-screens")
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nweb console screenshots: {out}")
    return out


class Browser:
    """A headless Chromium session with screenshot and console-error helpers."""

    def __init__(self, driver: Any, artifacts: Path, prefix: str) -> None:
        self.driver = driver
        self._artifacts = artifacts
        self._prefix = prefix

    def shot(self, name: str) -> Path:
        """Save a screenshot of the current page as an artifact."""
        path = self._artifacts / f"{self._prefix}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def text(self, css: str) -> str:
        """The visible text of the first element matching ``css`` ("" if none).

        Read in one script call: live fragments replace elements every poll, so a
        found-then-read element may already be gone.
        """
        script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
        return str(self.driver.execute_script(script, css))

    def click(self, css: str) -> None:
        """Click the element matching ``css``, again if a live swap replaced it meanwhile."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def attempt() -> bool:
            try:
                self.driver.find_element(By.CSS_SELECTOR, css).click()
            except StaleElementReferenceException:
                return False
            return True

        wait_for(attempt, f"click {css}", limit_s=10)

    def console_errors(self) -> list[str]:
        """Messages at SEVERE level logged by the page's JavaScript or its loads."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture
def browser(artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """Headless Debian Chromium via Selenium; fails the test on a console error."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        unavailable("chromium", f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        unavailable("chromium", f"selenium is not installed ({err})")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    page = Browser(driver, artifacts, request.node.name.removeprefix("test_")[:40])
    try:
        yield page
        errors = page.console_errors()
        assert not errors, f"JavaScript console errors: {errors}"
    finally:
        driver.quit()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A local-scheduler workspace (see tests/service/conftest.py); jobs killed after."""
    space = Workspace(tmp_path)
    yield space
    for comm in space.comms:
        comm.close()
    space.kill_leftover_jobs()


def console_app(ws: Workspace, config: Config, **web: Any) -> tuple[Communicator, Starlette]:
    """The web console's own communicator (never ticks) and its app."""
    comm = ws.communicator(config, watch=False)
    return comm, create_app(comm, WebConfig(refresh_s=REFRESH_S, **web))
