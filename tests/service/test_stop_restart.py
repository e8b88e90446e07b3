"""SIGTERM stops a real engine process between ticks; a new engine carries on from the DB."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

from mqi_communicator import CaseState, Communicator

from .conftest import Workspace, status_is, tick_until


def test_sigterm_stops_cleanly_and_restart_finishes_the_case(ws: Workspace) -> None:
    config_path = ws.root / "mqi.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "watch_dir": "cases",
                "results_dir": "results",
                "command": ["sh", "-c", "sleep 3; mkdir -p output; echo dose > output/dose.txt"],
                "intake": {"quiescence_s": 0.2},
                "engine": {"poll_interval_s": 0.2},
                "log": {"file": "logs/engine.log", "timezone": "Asia/Seoul"},
                "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
                "gpus": [{"name": "local/gpu0", "host": "local"}],
            }
        )
    )
    script = textwrap.dedent(
        f"""
        import signal
        from mqi_communicator import Communicator
        from mqi_communicator.logsetup import setup_logging
        c = Communicator.from_config_file({str(config_path)!r})
        setup_logging(c.config.log)
        signal.signal(signal.SIGTERM, lambda *_: c.request_stop())
        c.run_forever(on_tick=lambda r: print("tick", flush=True))
        c.close()
        print("stopped cleanly", flush=True)
        """
    )
    engine = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert engine.stdout is not None
        assert engine.stdout.readline().strip() == "tick"
        ws.drop_case("across restart")
        watcher = Communicator.from_config_file(config_path, watch=False)
        ws.comms.append(watcher)
        deadline = time.monotonic() + 30
        while not any(c.status is CaseState.RUNNING for c in watcher.cases()):
            assert time.monotonic() < deadline, watcher.cases()
            time.sleep(0.05)
        engine.send_signal(signal.SIGTERM)
        out, _ = engine.communicate(timeout=30)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(timeout=30)
    assert engine.returncode == 0 and "stopped cleanly" in out
    (case,) = watcher.cases()
    # Stopped between steps: the case is in a clean state (its job still runs detached).
    assert case.status in (CaseState.RUNNING, CaseState.RETRIEVING, CaseState.COMPLETED)
    log_text = (ws.root / "logs" / "engine.log").read_text(encoding="utf-8")
    assert "+0900" in log_text and "registered" in log_text
    # A new engine (the lock was released) finishes from the database alone.
    successor = Communicator.from_config_file(config_path)
    ws.comms.append(successor)
    tick_until(successor, status_is(successor, case.id, CaseState.COMPLETED), "completed")
    assert (ws.results / "across restart" / "dose.txt").read_text() == "dose\n"
    assert successor.case(case.id).attempt == 1
