"""``top`` for real: in tmux at 80x24 beside the database, ``--once`` plain, and the layout."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from mqi_communicator.console import take_snapshot
from mqi_communicator.console.render import render_screen
from mqi_communicator.dblock import EngineLock, sqlite_lock_path
from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store
from tests.e2e.crash_support import console_script

from .conftest import Site, plan, populate, write_config
from .tmux import Tmux


def top_command(site: Site, *extra: str) -> list[str]:
    return [*console_script(), "top", "--config", str(site.config), *extra]


def test_top_live_in_tmux_80x24_shows_zombie_follows_the_db_and_quits_on_q(site: Site) -> None:
    tmux = Tmux(" ".join([*top_command(site, "--interval", "0.5")]))
    try:
        screen = tmux.wait_screen(lambda s: "ZOMBIE" in s, "the GPU table")
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        assert re.search(r"local/gpu1 +ZOMBIE +quarantines 2 bravo zombie", screen)
        assert re.search(r"local/gpu2 +OFFLINE", screen)
        assert re.search(r"1 alpha running +running +local/g", screen)
        assert "LAST REASON" in screen and "unknown" in screen  # host health not persisted

        def claimed(text: str) -> bool:
            case_row = re.search(r"4 waiting 000 +submitting .* up 0%", text)
            gpu_row = re.search(r"local/gpu3 +assigned +4 waiting 000", text)
            return bool(case_row and gpu_row)

        assert not claimed(screen)

        # A case changes state in the database: the next refresh shows it.
        with Store.open(site.url) as store:
            store.claim(site.ids["waiting 000"], datetime.now(UTC), plan, ["local/gpu3"])
        tmux.wait_screen(claimed, "the claimed case on the next refresh")

        tmux.keys("j", "j")
        tmux.wait_screen(lambda s: "cases 3-" in s, "scrolled two rows")
        tmux.keys("q")
        deadline = time.monotonic() + 10
        while tmux.alive():
            assert time.monotonic() < deadline, "top did not quit on q"
            time.sleep(0.05)
    finally:
        tmux.close()


def test_top_once_prints_plain_tables_while_the_engine_lock_is_held(site: Site) -> None:
    lock_path = sqlite_lock_path(site.url)
    assert lock_path is not None
    lock = EngineLock(lock_path)
    lock.acquire()  # as a running engine holds it
    try:
        out = subprocess.run(
            top_command(site), capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        lock.release()
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout  # not a terminal: no colours, no screen control
    assert re.search(r"local/gpu1 +ZOMBIE +quarantines 2 bravo zombie", out.stdout)
    failed = r"bravo zombie +failed +- +local +1 +1m00s .*timed out; kill not confirmed"
    assert re.search(failed, out.stdout)
    assert re.search(r"submitted 30 +submitting 0 +running 1", out.stdout)


def test_top_once_on_postgres(pg_url: str, tmp_path: Path) -> None:
    api.upgrade(pg_url)
    with Store.open(pg_url) as store:
        populate(store, fillers=2)
    config = write_config(tmp_path, pg_url)
    out = subprocess.run(
        [*console_script(), "top", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert re.search(r"local/gpu1 +ZOMBIE +quarantines", out.stdout)


def test_layout_fits_small_screens_with_many_gpus_and_long_names(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'mqi.db').as_posix()}"
    api.upgrade(url)
    with Store.open(url) as store:
        populate(store, fillers=5)
        store.sync_gpus([(f"far/gpu{i:02d}", "far") for i in range(50)], datetime.now(UTC))
        store.register_case("/cases/" + "a very long case folder name " * 5, datetime.now(UTC))
        snap = take_snapshot(store, ["local", "far"], datetime.now(UTC))
    for width, height in ((80, 24), (100, 40), (60, 20)):
        console = Console(width=width, height=height, record=True, color_system=None)
        screen, _ = render_screen(snap, height=height, scroll=0, source="db")
        console.print(screen)
        lines = console.export_text().splitlines()
        assert len(lines) <= height, (width, height, lines)
        assert all(len(line) <= width for line in lines)
        text = "\n".join(lines)
        assert "ZOMBIE" in text and re.search(r"\+\d\d more", text), text
