"""``cases log`` beside a real engine (local scheduler): the tail, then --follow to the end."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from mqi_communicator import CaseState, Communicator
from tests.e2e.crash_support import console_script

#: Prints five lines, then waits for the test's go-ahead file, then one more line.
JOB = (
    'for i in 1 2 3 4 5; do echo "line $i"; done; '
    "while [ ! -f \"$GO\" ]; do sleep 0.05; done; echo 'last line'; "
    "mkdir -p output; echo d > output/dose.txt"
)


def wait_until(cond: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def write_config(root: Path, go: Path) -> Path:
    path = root / "mqi.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "watch_dir": "cases",
                "results_dir": "results",
                "command": ["sh", "-c", JOB],
                "intake": {"quiescence_s": 0.2},
                "engine": {"poll_interval_s": 0.2},
                "hosts": {
                    "local": {
                        "scheduler": {"kind": "local"},
                        "remote_base": "remote",
                        "env": {"GO": str(go)},
                    }
                },
                "gpus": [{"name": "local/gpu0", "host": "local"}],
            }
        )
    )
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*console_script(), "cases", "log", *args, "--config", str(config)],
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_log_tail_then_follow_until_the_case_ends(tmp_path: Path) -> None:
    go = tmp_path / "go"
    config = write_config(tmp_path, go)
    (tmp_path / "cases" / "patient 1").mkdir(parents=True)
    (tmp_path / "cases" / "patient 1" / "plan.dcm").write_text("plan")
    comm = Communicator.from_config_file(config)
    stop = threading.Event()
    engine = threading.Thread(target=comm.run_forever, args=(stop,), daemon=True)
    engine.start()
    follower: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: len(comm.cases()) == 1, "registered")
        case_id = str(comm.cases()[0].id)
        wait_until(lambda: b"line 5" in cli(config, case_id).stdout, "five lines logged")
        out = cli(config, case_id, "--lines", "2")
        assert out.returncode == 0 and out.stdout == b"line 4\nline 5\n"

        follower = subprocess.Popen(
            [
                *console_script(),
                "cases",
                "log",
                case_id,
                "--follow",
                "--lines",
                "1",
                "--interval",
                "0.1",
                "--config",
                str(config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert follower.stdout is not None
        assert follower.stdout.readline() == b"line 5\n"
        go.touch()
        assert follower.stdout.readline() == b"last line\n"
        # The case completes and the follower stops by itself.
        assert follower.wait(timeout=60) == 0
        assert comm.case(int(case_id)).status is CaseState.COMPLETED
        assert (
            cli(config, case_id, "--lines", "1").stdout == b"last line\n"
        )  # finished: still there
    finally:
        stop.set()
        engine.join(60)
        comm.close()
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.wait()


def test_log_of_a_case_without_a_job_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "go")
    with Communicator.from_config_file(config, watch=False) as comm:
        (tmp_path / "waiting").mkdir()
        (tmp_path / "waiting" / "plan.dcm").write_text("plan")
        case = comm.register(tmp_path / "waiting")
    out = cli(config, str(case.id))
    assert out.returncode == 1
    assert out.stderr.decode().strip() == (
        f"error: case {case.id} has no job yet (submitted); "
        "its log exists once the job is submitted"
    )
