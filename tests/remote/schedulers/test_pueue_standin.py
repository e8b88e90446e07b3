"""The Pueue stand-in honours the contract in shared/recipes/pueue-contract.md."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from tests.infra.processes import group_alive
from tests.infra.pueue import PueueStandin


def tasks(p: PueueStandin) -> dict[str, Any]:
    return json.loads(p.cli("status", "--json", check=True).stdout)["tasks"]


def kind(task: dict[str, Any]) -> str:
    status = task["status"]
    return status if isinstance(status, str) else next(iter(status))


def result(p: PueueStandin, task: dict[str, Any]) -> Any:
    inner = task["status"]["Done"]
    return inner if p.version == 3 else inner["result"]


def done(task: dict[str, Any] | None) -> bool:
    return task is not None and kind(task) == "Done"


def test_add_messages_and_shapes(pueue: PueueStandin) -> None:
    r = pueue.cli("add", "--", "echo", "hello")
    assert (r.returncode, r.stdout) == (0, "New task added (id 0).\n")
    r = pueue.cli("add", "-p", "--label", "mine", "--", "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "1\n", "")
    task = pueue.wait_for_status(1, done)
    assert isinstance(task, dict)
    assert task["label"] == "mine" and task["id"] == 1
    assert result(pueue, task) == "Success"
    if pueue.version == 3:
        assert {"enqueued_at", "start", "end", "prev_status"} <= set(task)
    else:
        assert not {"enqueued_at", "start", "end", "prev_status"} & set(task)
        assert {"enqueued_at", "start", "end", "result"} <= set(task["status"]["Done"])
    assert "T" in task["created_at"] and len(task["created_at"].split(".")[1]) == 9 + 6
    out = json.loads(pueue.cli("log", "1", "--json", check=True).stdout)
    assert out["1"]["output"] == "hi\n"


def test_unknown_group_is_refused(pueue: PueueStandin) -> None:
    pueue.cli("group", "add", "gpu0", "-p", "1", check=True)
    r = pueue.cli("add", "-p", "-g", "gpux", "--", "true")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == 'Group gpux doesn\'t exists. Use one of these: ["default", "gpu0"]\n'
    groups = json.loads(pueue.cli("group", "--json", check=True).stdout)
    assert groups["gpu0"] == {"status": "Running", "parallel_tasks": 1}


def test_ids_are_reused_after_clean(pueue: PueueStandin) -> None:
    for _ in range(3):
        pueue.cli("add", "-p", "--", "true", check=True)
    pueue.wait_for_status(2, done)
    pueue.cli("clean", check=True)
    assert tasks(pueue) == {}
    r = pueue.cli("add", "-p", "--label", "stranger", "--", "true", check=True)
    assert r.stdout == "0\n", "max(existing)+1 restarts at 0 once all are cleaned"


def test_remove_refuses_running(pueue: PueueStandin) -> None:
    pueue.cli("add", "-p", "--", "sleep", "60", check=True)
    pueue.wait_for_status(0, lambda t: kind(t) == "Running")
    r = pueue.cli("remove", "0")
    assert (r.returncode, r.stderr) == (1, "The command failed for tasks: 0\n")


def test_kill_is_asynchronous_and_kills_the_group(pueue: PueueStandin) -> None:
    pueue.cli("parallel", "2", check=True)
    # Task 0 ignores TERM: `kill -s term` succeeds ("signal sent") but the task runs on.
    pueue.cli("add", "--", "trap '' TERM; sleep 60 & wait", check=True)
    pueue.wait_for_status(0, lambda t: kind(t) == "Running")
    r = pueue.cli("kill", "-s", "term", "0")
    assert (r.returncode, r.stdout) == (0, "Tasks are being killed: 0\n")
    time.sleep(1)  # several daemon loops: TERM was ignored, so still running
    assert kind(tasks(pueue)["0"]) == "Running"
    pgid = json.loads((pueue.dir / "state.json").read_text())["tasks"]["0"]["pid"]
    assert group_alive(pgid)
    pueue.cli("kill", "0", check=True)  # default SIGKILL to the whole group
    task = pueue.wait_for_status(0, done)
    assert isinstance(task, dict) and result(pueue, task) == "Killed"
    deadline = time.monotonic() + 10
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(pgid), "the background sleep died with its group"


def test_kill_only_running_tasks(pueue: PueueStandin) -> None:
    pueue.cli("add", "--", "true", check=True)
    pueue.wait_for_status(0, done)
    r = pueue.cli("kill", "0", "7")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "The command failed for tasks: 0, 7\n")
    pueue.cli("add", "--", "sleep", "60", check=True)
    pueue.wait_for_status(1, lambda t: kind(t) == "Running")
    r = pueue.cli("kill", "0", "1")
    assert r.returncode == 0
    assert r.stdout == "Tasks are being killed: 1\nThe command failed for tasks: 0\n"


def test_failed_exit_code(pueue: PueueStandin) -> None:
    pueue.cli("add", "--", "exit", "5", check=True)
    task = pueue.wait_for_status(0, done)
    assert isinstance(task, dict) and result(pueue, task) == {"Failed": 5}


def test_restart_marks_running_killed_and_pauses_queued_groups(pueue: PueueStandin) -> None:
    pueue.cli("add", "--", "sleep", "60", check=True)
    pueue.cli("add", "--", "true", check=True)  # queued behind task 0 (parallel 1)
    pueue.wait_for_status(0, lambda t: kind(t) == "Running")
    pueue.stop()  # graceful: pueued kills its tasks
    pueue.start()
    now = tasks(pueue)
    assert result(pueue, now["0"]) == "Killed"
    assert kind(now["1"]) == "Queued"
    assert json.loads(pueue.cli("group", "--json").stdout)["default"]["status"] == "Paused"
    r = pueue.cli("add", "--", "true")
    assert "paused" in r.stdout
    pueue.cli("start", "-g", "default", check=True)
    assert isinstance(pueue.wait_for_status(1, done), dict)


def test_hard_crash_reports_killed_while_processes_live(pueue: PueueStandin) -> None:
    pueue.cli("add", "--", "sleep", "60", check=True)
    pueue.wait_for_status(0, lambda t: kind(t) == "Running")
    pgid = json.loads((pueue.dir / "state.json").read_text())["tasks"]["0"]["pid"]
    pueue.crash()
    r = pueue.cli("status", "--json")
    assert r.returncode == 1 and "Did you start it?" in r.stderr and r.stdout == ""
    pueue.start()
    assert result(pueue, tasks(pueue)["0"]) == "Killed"
    assert group_alive(pgid), "Killed is weak evidence: the process survived the crash"
    os.killpg(pgid, signal.SIGKILL)


def test_version_and_v4_state_wipe(pueue: PueueStandin) -> None:
    expected = "pueue 3.4.1\n" if pueue.version == 3 else "pueue 4.0.0\n"
    assert pueue.cli("--version").stdout == expected
    pueue.cli("add", "--", "true", check=True)
    pueue.wait_for_status(0, done)
    pueue.stop()
    pueue.config.write_text(f"standin_version: {7 - pueue.version}\n")
    pueue.version = 7 - pueue.version
    pueue.start()
    assert tasks(pueue) == {}, "a different major version starts from empty state"


def test_log_lines(pueue: PueueStandin) -> None:
    pueue.cli("add", "--", "seq", "1", "40", check=True)
    pueue.wait_for_status(0, done)
    default = json.loads(pueue.cli("log", "0", "--json").stdout)["0"]["output"]
    assert default.split() == [str(i) for i in range(26, 41)]
    two = json.loads(pueue.cli("log", "0", "--json", "--lines", "2").stdout)["0"]["output"]
    assert two == "39\n40\n"
    full = json.loads(pueue.cli("log", "0", "--json", "--full").stdout)["0"]["output"]
    assert len(full.split()) == 40
