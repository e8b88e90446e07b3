"""End to end on the local scheduler: real LocalTransport, real processes, real SQLite."""

from __future__ import annotations

import json
import threading
import time
from importlib import resources
from pathlib import Path

from mqi_communicator import CaseState, Communicator, EvidenceKind, GpuState, load_config

from .conftest import Workspace, only_case, status_is, tick_until


def test_case_dropped_in_watch_dir_completes_with_results(ws: Workspace) -> None:
    """run_forever: intake wakes the loop, the job runs, results are verified and moved."""
    # A long poll interval: the case can only start promptly if intake wakes the loop.
    # remote_retention keep: this test looks at the remote copy after completion.
    comm = ws.communicator(ws.config(engine={"poll_interval_s": 30, "remote_retention": "keep"}))
    stop = threading.Event()
    ticks: list[object] = []
    runner = threading.Thread(target=comm.run_forever, args=(stop, ticks.append))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not ticks and time.monotonic() < deadline:
            time.sleep(0.02)
        ws.drop_case("patient 01", {"ct/slice1.dcm": "ct", "plan.dcm": "plan", "log.txt": "x"})
        # Past `submitting` too: a stop aborts an upload in flight (and the restart then
        # recovers the case under a new attempt), which is not what this test is about.
        while time.monotonic() < deadline:
            cases = comm.cases()
            if cases and cases[0].status not in (CaseState.SUBMITTED, CaseState.SUBMITTING):
                break
            time.sleep(0.02)
        case = only_case(comm)
        assert case.status is not CaseState.SUBMITTED, (
            "the case did not start long before the 30 s poll interval: intake did not wake "
            f"the loop ({case})"
        )
    finally:
        comm.request_stop()
        runner.join(timeout=60)
    assert not runner.is_alive()
    # Finish with plain ticks (the run_forever loop would wait 30 s between polls).
    tick_until(comm, status_is(comm, case.id, CaseState.COMPLETED), "completed")
    done = comm.case(case.id)
    assert done.progress == 100 and done.completed_at is not None and done.attempt == 1
    result = ws.results / "patient 01"
    assert (result / "dose.txt").read_text() == "dose\n"
    stamp = json.loads((result / ".mqi-result.json").read_text())
    assert stamp["case_id"] == case.id and stamp["attempt"] == 1
    assert sorted(p.name for p in ws.results.iterdir() if not p.name.startswith(".")) == [
        "patient 01"
    ]
    # The job ran on a copy: the remote dir holds the uploaded inputs and the output.
    assert done.remote_dir is not None
    assert (ws.remote_base / done.remote_dir.rsplit("/", 1)[1] / "plan.dcm").exists()
    trail = [
        (t.from_state, t.to_state) for t in comm.history(case_id=case.id) if t.entity == "case"
    ]
    states = [to for _, to in trail if _ != to]
    assert states == ["submitted", "submitting", "running", "retrieving", "completed"]
    (gpu,) = comm.gpus()
    assert gpu.status is GpuState.AVAILABLE and gpu.case_id is None
    release = [t for t in comm.history(gpu_name=gpu.name) if t.trigger == "release"]
    assert release and release[-1].evidence is not None
    assert release[-1].evidence.kind is EvidenceKind.OBSERVED_TERMINAL
    summary = comm.summary()
    assert summary["cases"]["completed"] == 1 and summary["gpus"]["available"] == 1


def test_nonzero_exit_fails_with_exit_code_and_log_tail(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(command="echo 'MOQUI: dose grid too large' >&2; exit 7"))
    ws.drop_case("bad plan")
    tick_until(
        comm, lambda: bool(comm.cases()) and only_case(comm).status is CaseState.FAILED, "failed"
    )
    case = only_case(comm)
    assert case.failure_reason is not None
    assert "job exited with code 7" in case.failure_reason
    assert "MOQUI: dose grid too large" in case.failure_reason
    assert not (ws.results / "bad plan").exists()
    assert comm.gpus()[0].status is GpuState.AVAILABLE


HOSTILE = [
    "with space",
    'quote\'s "double"',
    "$(touch PWNED) `touch PWNED2`",
    "환자 01 \u2013 ü",
    "semi;colon & amp | pipe > gt",
    "-leading-dash",
]


def test_hostile_case_names_complete(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(command="mkdir -p output; cp plan.dcm output/", gpus=3))
    for name in HOSTILE:
        ws.drop_case(name, {"plan.dcm": f"plan of {name}"})

    def all_done() -> bool:
        cases = comm.cases()
        return len(cases) == len(HOSTILE) and all(c.status is CaseState.COMPLETED for c in cases)

    tick_until(comm, all_done, "all hostile-named cases completed")
    for name in HOSTILE:
        assert (ws.results / name / "plan.dcm").read_text() == f"plan of {name}"
    assert {c.name for c in comm.cases()} == set(HOSTILE)
    for stray in ("PWNED", "PWNED2"):
        assert not list(ws.root.rglob(stray)), "a case name was executed by a shell"


def test_empty_and_unreadable_folders_are_failed_with_reason(ws: Workspace) -> None:
    comm = ws.communicator()
    (ws.watch / "empty case").mkdir(parents=True)
    broken = ws.drop_case("broken link")
    (broken / "ct" / "slice2.dcm").symlink_to(ws.root / "nowhere.dcm")
    tick_until(comm, lambda: len(comm.cases()) == 2, "both folders registered")
    by_name = {c.name: c for c in comm.cases()}
    empty, unreadable = by_name["empty case"], by_name["broken link"]
    assert empty.status is CaseState.FAILED
    assert empty.failure_reason == "empty: the case directory holds no files"
    assert unreadable.status is CaseState.FAILED
    assert unreadable.failure_reason is not None
    assert unreadable.failure_reason.startswith("unreadable: cannot read ct/slice2.dcm")
    # Failed at intake: no GPU was ever claimed for them.
    assert comm.gpus()[0].status is GpuState.AVAILABLE
    assert not any(t.trigger == "claim" for t in comm.history())


def test_register_by_path_is_idempotent(ws: Workspace) -> None:
    comm = ws.communicator(ws.config(), watch=False)
    outside = ws.root / "elsewhere" / "case A"
    (outside / "ct").mkdir(parents=True)
    (outside / "ct" / "a.dcm").write_text("a")
    first = comm.register(outside)
    again = comm.register(str(outside))
    assert first.id == again.id and first.status is CaseState.SUBMITTED
    tick_until(comm, status_is(comm, first.id, CaseState.COMPLETED), "completed")
    assert (ws.results / "case A" / "dose.txt").exists()


def test_shipped_local_example_runs_a_case(tmp_path: Path) -> None:
    """The local example is usable as shipped: copy it, drop a case, get results."""
    example = resources.files("mqi_communicator") / "examples" / "local.yaml"
    config_path = tmp_path / "local.yaml"
    config_path.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    overrides = {"MQI__INTAKE__QUIESCENCE_S": "0.2", "MQI__ENGINE__POLL_INTERVAL_S": "0.2"}
    comm = Communicator(load_config(config_path, env=overrides))
    space = Workspace(tmp_path, comms=[comm])
    try:
        space.drop_case("example case")
        tick_until(
            comm,
            lambda: bool(comm.cases()) and only_case(comm).status is CaseState.COMPLETED,
            "the example's stand-in job completed",
        )
        assert (tmp_path / "results" / "example case" / "dose.txt").read_text() == "dose\n"
    finally:
        comm.close()
        space.kill_leftover_jobs()
