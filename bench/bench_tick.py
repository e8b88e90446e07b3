"""Tick cost of the reconciler: 1,000 running jobs over SSH, and 10,000 finished cases.

Usage: python bench/bench_tick.py [--jobs 1000] [--sample 20] [--finished 10000]
       [--repeat 5] [--port 22556] [--skip-ssh] [--skip-finished]

Part 1 -- 1,000 running jobs over the SSH Pueue stand-in. Starts a loopback sshd and a
stand-in pueued (tests/infra helpers), creates 1,000 case directories with our real
wrapper and label markers, adds 1,000 tasks labelled like ours (``mqic-<id>-a1``, each
``sleep 3600`` under the wrapper, so every task really runs and writes its markers),
and puts 1,000 matching ``running`` cases (each holding one of 1,000 GPUs) in a SQLite
database. Then it times full ``Communicator.tick()`` calls (median of --repeat): one
batched poll over the kept SSH connection, 1,000 decisions, no state change. The
baseline is the original approach, one fresh ``ssh`` process per running case asking
``pueue status --json``: only --sample of them are timed and the total for 1,000 is
EXTRAPOLATED (mean x jobs); and its floor, a fresh ``ssh ... true`` per case (the
process + handshake alone), extrapolated the same way.

Part 2 -- 10,000 finished cases. Local scheduler, SQLite: the tick on an empty database
vs. the same tick after 10,000 completed cases (with their audit rows) were inserted.

Prints the figures and ratios measured in this run; asserts nothing. Everything it
starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from mqi_communicator import Communicator  # noqa: E402
from mqi_communicator.config import parse_config  # noqa: E402
from mqi_communicator.engine.runtime import case_ref  # noqa: E402
from mqi_communicator.migrations.api import upgrade  # noqa: E402
from mqi_communicator.persistence import Store  # noqa: E402
from mqi_communicator.persistence.models import Case, CaseTransition  # noqa: E402
from mqi_communicator.remote.job.markers import marker_dir, wrapper_argv, wrapper_source  # noqa: E402
from mqi_communicator.remote.protocol import remote_case_dir  # noqa: E402
from mqi_communicator.remote.quoting import join_argv  # noqa: E402
from mqi_communicator.statemachine import CaseState, Evidence, EvidenceKind  # noqa: E402
from tests.infra.pueue import PueueStandin  # noqa: E402
from tests.infra.sshd import SshServer, start_sshd  # noqa: E402


def median_time(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def standin_request(standin: PueueStandin, req: dict[str, Any]) -> dict[str, Any]:
    """One request on the stand-in daemon's socket (as its CLI sends it, minus the fork)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(standin.dir / "pueue.socket"))
        with conn.makefile("rwb") as stream:
            stream.write(json.dumps(req).encode() + b"\n")
            stream.flush()
            answer: dict[str, Any] = json.loads(stream.readline())
    return answer


def base_config(root: Path, hosts: dict[str, Any], gpus: list[dict[str, Any]]) -> Any:
    data = {
        "watch_dir": "watch",
        "results_dir": "results",
        "database_url": "sqlite:///" + (root / "mqi.db").as_posix(),
        "command": ["sleep", "3600"],
        "engine": {"poll_interval_s": 10, "job_timeout_s": 86400},
        "hosts": hosts,
        "gpus": gpus,
    }
    return parse_config(data, base_dir=root, env={})


def populate_running(
    comm: Communicator, standin: PueueStandin, remote_base: Path, jobs: int
) -> list[str]:
    """1,000 running cases in the DB, each with a really running, labelled stand-in task."""
    store = comm.store
    now = datetime.now(UTC)
    gpu_names = [g.name for g in store.list_gpus()]
    dirs = []
    for i in range(jobs):
        path = remote_base.parent / "watch" / f"case {i:04d}"
        case, _ = store.register_case(str(path), now)
        label = f"mqic-{case.id}-a{case.attempt}"
        rdir = remote_case_dir(str(remote_base), case.id, case.attempt)

        def plan(_c: object, _g: object, lb: str = label, rd: str = rdir) -> tuple[str, str]:
            return lb, rd

        claimed = store.claim(case.id, now, plan=plan, candidates=[gpu_names[i]])
        assert claimed is not None
        Path(rdir).mkdir(parents=True)
        mqi = Path(marker_dir(rdir))
        mqi.mkdir(parents=True)
        (mqi / "wrapper.sh").write_text(wrapper_source())
        (mqi / "label").write_text(label + "\n")
        (mqi / "token").write_text(f"{claimed[0].attempt_token}\n")
        answer = standin_request(
            standin,
            {
                "cmd": "add",
                "print_task_id": True,
                "label": label,
                "group": "default",
                "working_directory": None,
                "stashed": False,
                "command": join_argv(wrapper_argv(rdir, label, ["sleep", "3600"])),
                "path": rdir,
                "envs": dict(os.environ),
            },
        )
        task_id = answer["stdout"].strip()
        assert answer["code"] == 0 and task_id.isdigit(), answer
        ev = Evidence(EvidenceKind.SUBMIT_ACCEPTED, label, now, job_id=task_id)
        store.apply(
            case.id,
            "confirm_submitted",
            None,
            None,
            evidence=ev,
            now=now,
            detail=f"submitted as {task_id}",
            job_id=task_id,
        )
        store.update_case(case.id, now, detail="job started", started_at=now)
        dirs.append(rdir)
    return dirs


def wait_all_started(dirs: list[str], limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    missing = dirs
    while missing:
        missing = [d for d in missing if not (Path(marker_dir(d)) / "pgid").exists()]
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(missing)} wrappers never started")
        time.sleep(0.5)


def fresh_ssh_status(server: SshServer, standin: PueueStandin) -> None:
    fresh_ssh(server, " ".join([*standin.command, "status", "--json"]))


def fresh_ssh(server: SshServer, remote: str) -> None:
    subprocess.run(
        [
            "ssh",
            "-p",
            str(server.port),
            "-i",
            str(server.key_path),
            "-o",
            f"UserKnownHostsFile={server.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{server.user}@{server.host}",
            remote,
        ],
        check=True,
        capture_output=True,
    )


def bench_ssh(tmp: Path, args: argparse.Namespace) -> None:
    server = start_sshd(tmp / "sshd", args.port)
    standin = PueueStandin(4, Path(tempfile.mkdtemp(prefix="mqi-pqb-")))
    comm: Communicator | None = None
    try:
        standin.start()
        standin.cli("parallel", "0", "-g", "default", check=True)
        root = tmp / "ssh"
        remote_base = root / "remote"
        remote_base.mkdir(parents=True)
        host = {
            "transport": "ssh",
            "hostname": server.host,
            "port": server.port,
            "user": server.user,
            "key_file": str(server.key_path),
            "known_hosts": str(server.known_hosts),
            "scheduler": {"kind": "pueue", "pueue_command": standin.command, "timeout_s": 120},
            "remote_base": str(remote_base),
        }
        gpus = [
            {"name": f"gpu-server/gpu{i:04d}", "host": "gpu-server", "pueue_group": "default"}
            for i in range(args.jobs)
        ]
        config = base_config(root, {"gpu-server": host}, gpus)
        upgrade(config.database_url)
        comm = Communicator(config, watch=False)
        t0 = time.perf_counter()
        dirs = populate_running(comm, standin, remote_base, args.jobs)
        wait_all_started(dirs)
        print(f"[1] set up {args.jobs} running tasks + cases in {time.perf_counter() - t0:.1f} s")
        comm.tick()  # connect once; the steady state is what matters
        med, times = median_time(comm.tick, args.repeat)
        report = comm.tick()
        running = comm.summary()["cases"][CaseState.RUNNING.value]
        assert running == args.jobs and not report.transitions, (running, report)
        print(
            f"[1] tick with {args.jobs} running jobs over SSH (one batched poll): "
            f"median {med * 1000:.0f} ms  (runs: {', '.join(f'{t * 1000:.0f}' for t in times)} ms)"
        )
        # Where the tick's time goes: the one remote poll vs. everything local.
        sched = comm.hosts["gpu-server"].scheduler
        refs = [case_ref(c) for c in comm.cases([CaseState.RUNNING])]
        poll_med, _ = median_time(lambda: sched.poll(refs), args.repeat)
        print(
            f"[1]   of which the one batched poll (pueue status --json + marker probe of "
            f"{len(refs)} dirs): median {poll_med * 1000:.0f} ms"
        )
        fresh_ssh_status(server, standin)  # warm the page cache like the batched case
        per = []
        for _ in range(args.sample):
            t0 = time.perf_counter()
            fresh_ssh_status(server, standin)
            per.append(time.perf_counter() - t0)
        mean = statistics.mean(per)
        total = mean * args.jobs
        print(
            f"[1] baseline: one fresh `ssh ... pueue status --json` per case: mean "
            f"{mean * 1000:.0f} ms over {args.sample} timed; EXTRAPOLATED x{args.jobs} = "
            f"{total:.1f} s per polling round"
        )
        print(f"[1] ratio baseline / batched tick: {total / med:.0f}x")
        bare = []
        for _ in range(args.sample):
            t0 = time.perf_counter()
            fresh_ssh(server, "true")
            bare.append(time.perf_counter() - t0)
        bare_mean = statistics.mean(bare)
        print(
            f"[1] floor of the baseline: one fresh `ssh ... true` per case: mean "
            f"{bare_mean * 1000:.0f} ms; EXTRAPOLATED x{args.jobs} = {bare_mean * args.jobs:.1f} s"
            f" (ratio to the batched tick: {bare_mean * args.jobs / med:.0f}x)"
        )
    finally:
        if comm is not None:
            comm.close()
        standin.cleanup()
        server.stop()


def insert_finished(store: Store, count: int) -> None:
    """``count`` completed cases, each with the five audit rows a real one leaves."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cases, rows = [], []
    steps = [
        ("-", "submitted", "register"),
        ("submitted", "submitting", "claim"),
        ("submitting", "running", "confirm_submitted"),
        ("running", "retrieving", "job_succeeded"),
        ("retrieving", "completed", "retrieved"),
    ]
    for i in range(count):
        at = start + timedelta(minutes=i)
        cid = 1_000_000 + i
        cases.append(
            {
                "id": cid,
                "path": f"/data/watch/old case {i:05d}",
                "status": CaseState.COMPLETED.value,
                "progress": 100,
                "attempt": 1,
                "label": f"mqic-{cid}-a1",
                "job_id": str(i),
                "remote_dir": f"/srv/mqi/mqic_case_{cid}_a1",
                "host": "local",
                "gpu_name": None,
                "cancel_requested": False,
                "transient_failures": 0,
                "created_at": at,
                "status_updated_at": at,
                "started_at": at,
                "completed_at": at,
                "version": 6,
            }
        )
        for k, (frm, to, trig) in enumerate(steps):
            rows.append(
                {
                    "at": at + timedelta(seconds=k),
                    "entity": "case",
                    "case_id": cid,
                    "gpu_name": "local/gpu0" if k else None,
                    "from_state": frm,
                    "to_state": to,
                    "trigger": trig,
                    "detail": "",
                    "attempt": 1,
                    "label": f"mqic-{cid}-a1",
                }
            )
    with store._engine.begin() as conn:  # bench-only bulk load
        conn.execute(insert(Case), cases)
        conn.execute(insert(CaseTransition), rows)


def bench_finished(tmp: Path, args: argparse.Namespace) -> None:
    root = tmp / "finished"
    root.mkdir()
    config = base_config(
        root,
        {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
        [{"name": "local/gpu0", "host": "local"}],
    )
    upgrade(config.database_url)
    with Communicator(config, watch=False) as comm:
        comm.tick()
        empty, _ = median_time(comm.tick, 50)
        t0 = time.perf_counter()
        insert_finished(comm.store, args.finished)
        print(
            f"[2] inserted {args.finished} completed cases "
            f"(+{args.finished * 5} audit rows) in {time.perf_counter() - t0:.1f} s"
        )
        comm.tick()
        full, _ = median_time(comm.tick, 50)
        summary, _ = median_time(comm.summary, args.repeat)
    print(f"[2] tick, empty database:              median {empty * 1000:.2f} ms")
    print(f"[2] tick, {args.finished} finished cases:     median {full * 1000:.2f} ms")
    print(f"[2] ratio full / empty: {full / empty:.2f}x")
    print(f"[2] (summary() with {args.finished} finished cases: {summary * 1000:.1f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=20)
    ap.add_argument("--finished", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--port", type=int, default=22556)
    ap.add_argument("--skip-ssh", action="store_true")
    ap.add_argument("--skip-finished", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mqi-bench-tick-"))
    try:
        if not args.skip_ssh:
            bench_ssh(tmp, args)
        if not args.skip_finished:
            bench_finished(tmp, args)
    finally:
        with contextlib.suppress(Exception):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
