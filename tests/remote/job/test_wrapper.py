"""The job wrapper (``wrapper.sh``) run as a real process group."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mqi_communicator.remote.job import markers
from tests.infra.processes import group_gone


def token_for(case: Path) -> str:
    """A token of its own for the job in ``case`` (jobs never share one)."""
    return hashlib.sha256(str(case).encode()).hexdigest()[:32]


def mqi(case: Path) -> Path:
    """The marker directory of ``case`` (a sibling, outside the case)."""
    return Path(markers.marker_dir(str(case)))


def install(case: Path, label: str = "job", token: str | None = None) -> None:
    case.mkdir(exist_ok=True)
    script = markers.READ_TOKEN + markers.install_snippet(str(case), label)
    stdin = f"{token or token_for(case)}\n".encode()
    r = subprocess.run(["sh", "-c", script], input=stdin, check=True)
    assert r.returncode == 0


def _default_signals() -> None:
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def start(case: Path, command: list[str], label: str = "job") -> subprocess.Popen[bytes]:
    install(case, label)
    return subprocess.Popen(
        markers.wrapper_argv(str(case), label, command),
        start_new_session=True,
        # A shell cannot trap a signal ignored when it started (POSIX): a test run started
        # under nohup or as a background job would otherwise hand the wrapper an ignored
        # HUP/INT and the signal tests would hang. Schedulers start it with defaults.
        preexec_fn=_default_signals,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def marker(case: Path, name: str) -> str | None:
    path = mqi(case) / name
    return path.read_text().strip() if path.exists() else None


def wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def test_success_writes_all_markers_and_runs_in_case_dir(tmp_path: Path) -> None:
    case = tmp_path / "case"
    before = int(time.time())
    proc = start(case, ["sh", "-c", "pwd; echo to-stderr >&2"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out == b"" and err == b"", "the wrapper must print nothing"
    assert marker(case, "exit") == "0"
    assert marker(case, "label") == "job"
    assert marker(case, "pgid") == str(proc.pid)
    started = marker(case, "started")
    assert started is not None and int(started) >= before
    assert marker(case, "signal") is None
    log = (mqi(case) / "job.log").read_text()
    assert log == f"{case.resolve()}\nto-stderr\n"
    assert not list(mqi(case).glob("*.tmp*")), "no temp files left behind"


def test_nonzero_exit_is_recorded(tmp_path: Path) -> None:
    case = tmp_path / "case"
    proc = start(case, ["sh", "-c", "echo failing; exit 7"])
    proc.wait(timeout=30)
    assert proc.returncode == 7
    assert marker(case, "exit") == "7"
    assert (mqi(case) / "job.log").read_text() == "failing\n"


@pytest.mark.parametrize(
    ("sig", "name", "code"),
    [(signal.SIGTERM, "TERM", 143), (signal.SIGINT, "INT", 130), (signal.SIGHUP, "HUP", 129)],
)
def test_signal_to_wrapper_ends_job_and_records_it(
    tmp_path: Path, sig: signal.Signals, name: str, code: int
) -> None:
    case = tmp_path / "case"
    proc = start(case, ["sh", "-c", "touch running; sleep 60"])
    wait_for(case / "running")
    # Only the wrapper gets the signal: it must forward it to the child itself.
    os.kill(proc.pid, sig)
    proc.wait(timeout=30)  # a deadline under load, not a pause
    assert proc.returncode == code
    assert marker(case, "signal") == name
    assert marker(case, "exit") == str(code)
    assert group_gone(proc.pid), "the child must be gone too"


def test_term_to_group_is_recorded(tmp_path: Path) -> None:
    case = tmp_path / "case"
    proc = start(case, ["sh", "-c", "touch running; sleep 60; echo never"])
    wait_for(case / "running")
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)  # a deadline under load, not a pause
    assert marker(case, "exit") == "143"
    assert marker(case, "signal") == "TERM"
    assert "never" not in (mqi(case) / "job.log").read_text()


def test_sigkill_leaves_no_exit_marker(tmp_path: Path) -> None:
    case = tmp_path / "case"
    proc = start(case, ["sh", "-c", "touch running; sleep 60"])
    wait_for(case / "running")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)  # a deadline under load, not a pause
    assert marker(case, "exit") is None
    assert marker(case, "pgid") == str(proc.pid)
    assert group_gone(proc.pid)


def test_missing_separator_is_refused(tmp_path: Path) -> None:
    case = tmp_path / "case"
    install(case)
    wrapper = markers.wrapper_path(str(case))
    r = subprocess.run(["sh", wrapper, "job", "true"], capture_output=True)
    assert r.returncode == 125 and r.stdout == b""
    assert marker(case, "exit") is None
    assert "usage" in (mqi(case) / "wrapper.log").read_text()


def test_child_inherits_the_wrappers_process_group(tmp_path: Path) -> None:
    case = tmp_path / "case"
    proc = start(case, ["sh", "-c", "ps -o pgid= -p $$ > t; mv t child_pgid; sleep 60"])
    wait_for(case / "child_pgid")
    try:
        assert (case / "child_pgid").read_text().strip() == marker(case, "pgid")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_signal_before_the_child_started_still_records(tmp_path: Path) -> None:
    case = tmp_path / "case"
    install(case)
    # SIGTERM arrives at once; wherever the wrapper is, it must end with consistent markers.
    proc = subprocess.Popen(
        markers.wrapper_argv(str(case), "job", ["sleep", "60"]), start_new_session=True
    )
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)  # a deadline under load, not a pause
    assert group_gone(proc.pid)
    exit_marker = marker(case, "exit")
    # Killed before the traps were set: nothing recorded (no pgid either, or a pgid of a
    # gone group); after: signal TERM + exit 143. Never a success.
    assert exit_marker in (None, "143")
    if exit_marker == "143":
        assert marker(case, "signal") == "TERM"
