"""Engine throughput on a 100 Mbit/s link: makespan of 16 cases on 4 GPUs vs its lower bound.

Usage: python bench/bench_throughput.py [--mode both|inline|pool] [--cases 16] [--mb 60]
           [--job-s 5] [--gpus 4] [--rate 100mbit] [--pool-key engine.transfers.max_parallel]
           [--pool-value 4] [--timeout 900] [--quick] [--detail] [--keep]

``--quick`` (8 cases x 20 MB, jobs 2 s; about a minute for both modes) is for
iterating; the figures of record are the defaults. ``--detail`` prints each case's
timeline, ``--keep`` keeps the work folder (the engine's log).

Needs root (bench/linklab.py). A real ``mqi-communicator run`` (its own process)
reaches the Pueue stand-in (tests/standins/pueue, one group per GPU, ``parallel 1``)
over an sshd inside a network namespace whose veth is shaped to ``--rate`` both ways
(``tc ... tbf``). ``--cases`` case folders of ``--mb`` MB of random bytes each (one
file; poorly compressible, so ``auto`` compression sends them as they are) are
renamed into the watch folder at once; every job sleeps ``--job-s`` seconds and
writes its start and end times, which the results bring back.

``--mode inline`` runs today's engine (transfers inside the tick). ``--mode pool``
sets ``--pool-key`` (a dotted config path; default the transfer pool's knob) to
``--pool-value``; until the pool lands the config loader refuses the key, and the
benchmark says so.

Reports the makespan (drop to the last completion) against the lower bound
``max(total bytes / link rate, total job time / GPUs) + one transfer`` (link rate =
the nominal ``--rate``), and the GPU idle time while cases were waiting (per GPU,
time without a job while some case's job had not started yet, capped by the number
of such cases). Where the time goes (bench/linkwatch.py, sampled from outside the
engine): the link's upstream bytes over time (utilisation, and seconds below 20 % of
the rate while uploads were due), each case's upload span (its ``.partial-*`` folder
seen -> verified folder seen), upload -> job start, job end -> completed. With both
modes (the default) it ends with each makespan over the bound and pool / inline.
Asserts nothing (goal: pool makespan <= 1.15x the bound).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from linklab import limited_link, require_link_tools, ssh_check, sshd  # noqa: E402
from linkwatch import Watch, summary  # noqa: E402

from tests.infra.pueue import pueue_daemon  # noqa: E402

JOB = (
    "mkdir -p output && python3 -c 'import time; print(time.time())' > output/start && "
    "sleep {job_s} && python3 -c 'import time; print(time.time())' > output/end"
)
RATES = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def rate_bps(rate: str) -> float:
    """Bytes per second of a tc rate such as ``100mbit``."""
    for unit, mult in RATES.items():
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * mult / 8
    raise SystemExit(f"unsupported --rate {rate!r} (use kbit, mbit or gbit)")


def set_dotted(data: dict[str, Any], key: str, value: object) -> None:
    *path, last = key.split(".")
    for part in path:
        data = data.setdefault(part, {})
    data[last] = value


def write_config(base: Path, host: dict[str, Any], args: argparse.Namespace) -> Path:
    data: dict[str, Any] = {
        "watch_dir": str(base / "watch"),
        "results_dir": str(base / "results"),
        "database_url": "sqlite:///" + str(base / "mqi.db"),
        "command": ["sh", "-c", JOB.format(job_s=args.job_s)],
        "intake": {"quiescence_s": 0.5, "scan_interval_s": 1},
        "engine": {"poll_interval_s": 0.5, "backoff": {"base_s": 0.5, "factor": 2, "cap_s": 4}},
        "log": {"file": str(base / "mqi.log")},
        "hosts": {"gpu-server": host},
        "gpus": [
            {
                "name": f"gpu-server/gpu{i}",
                "host": "gpu-server",
                "pueue_group": f"gpu{i}",
                "cuda_devices": str(i),
            }
            for i in range(args.gpus)
        ],
    }
    # The baseline is today's engine before the pool: every transfer inside the tick.
    set_dotted(data, args.pool_key, args.pool_value if args.mode == "pool" else 0)
    path = base / "mqi.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_cases(staging: Path, count: int, mb: float) -> int:
    total = 0
    for i in range(count):
        case = staging / f"case_{i:02d}"
        case.mkdir(parents=True)
        size = int(mb * 1e6)
        with (case / "ct_volume.bin").open("wb") as fh:
            for _ in range(size // (1 << 20)):
                fh.write(os.urandom(1 << 20))
            fh.write(os.urandom(size % (1 << 20)))
        total += size
    return total


def statuses(db: Path) -> list[str]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        try:
            return [r[0] for r in con.execute("SELECT status FROM cases")]
        except sqlite3.OperationalError:
            return []  # not migrated yet


def completion_times(db: Path) -> dict[str, tuple[str, float, int]]:
    """case name -> (gpu, completion time as epoch seconds, case id)."""
    query = (
        "SELECT c.path, c.gpu_name, MAX(t.at), c.id FROM cases c JOIN case_transitions t "
        "ON t.case_id = c.id AND t.entity = 'case' AND t.to_state = 'completed' GROUP BY c.id"
    )
    out = {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        for path, gpu, at, cid in con.execute(query):
            when = at if isinstance(at, (int, float)) else _epoch(str(at))
            out[Path(path).name] = (gpu, when, cid)
    return out


def _epoch(text: str) -> float:
    from datetime import UTC, datetime

    stamp = datetime.fromisoformat(text)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def idle_while_waiting(
    jobs: dict[str, tuple[str, float, float]], t0: float, gpus: list[str], step: float = 0.01
) -> float:
    """GPU-seconds without a job while some case's job had not started (capped by those)."""
    end = max(e for _, _, e in jobs.values())
    starts = sorted(s for _, s, _ in jobs.values())
    by_gpu: dict[str, list[tuple[float, float]]] = {g: [] for g in gpus}
    for gpu, s, e in jobs.values():
        by_gpu.setdefault(gpu, []).append((s, e))
    idle = 0.0
    t = t0
    while t < end:
        waiting = sum(1 for s in starts if s > t)
        if waiting:
            free = sum(1 for g in gpus if not any(s <= t < e for s, e in by_gpu[g]))
            idle += min(free, waiting) * step
        t += step
    return idle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["both", "inline", "pool"], default="both")
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--mb", type=float, default=60.0)
    ap.add_argument("--job-s", type=float, default=5.0)
    ap.add_argument("--gpus", type=int, default=4)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--pool-key", default="engine.transfers.max_parallel")
    ap.add_argument("--pool-value", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument(
        "--quick", action="store_true", help="iterate: 8 cases x 20 MB, jobs 2 s (link-bound too)"
    )
    ap.add_argument("--detail", action="store_true", help="print each case's timeline")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (engine log)")
    args = ap.parse_args()
    if args.quick:
        args.cases, args.mb, args.job_s = 8, 20.0, 2.0
    require_link_tools()
    if args.mode != "both":
        run(args)
        return
    # Both in one run: the inline engine is the baseline the pool is measured against.
    spans: dict[str, tuple[float, float]] = {}
    for mode in ("inline", "pool"):
        spans[mode] = run(argparse.Namespace(**{**vars(args), "mode": mode}))
        print()
    bound = spans["pool"][1]
    print(f"{'lower bound':34} {bound:8.1f} s")
    for mode, (span, _) in spans.items():
        print(f"{mode + ' makespan / lower bound':34} {span / bound:8.3f}")
    print(f"{'pool makespan / inline makespan':34} {spans['pool'][0] / spans['inline'][0]:8.3f}")


def run(args: argparse.Namespace) -> tuple[float, float]:
    """One engine run over the shaped link; prints its figures; (makespan, lower bound)."""
    link_bps = rate_bps(args.rate)

    base = Path(tempfile.mkdtemp(prefix="mqi-bench-tp-"))
    engine: subprocess.Popen[bytes] | None = None
    try:
        for sub in ("watch", "results", "remote", "staging"):
            (base / sub).mkdir()
        total = make_cases(base / "staging", args.cases, args.mb)
        with contextlib.ExitStack() as stack:
            link = stack.enter_context(limited_link(args.rate))
            server = stack.enter_context(sshd(base / "conf", link.ns_addr, link.netns))
            ssh_check(server)
            pueue = stack.enter_context(pueue_daemon(4))
            for i in range(args.gpus):
                pueue.cli("group", "add", f"gpu{i}", "-p", "1", check=True)
            scheduler = {"kind": "pueue", "pueue_command": pueue.command, "timeout_s": 60}
            config = write_config(base, server.host_entry(base / "remote", scheduler), args)
            check = subprocess.run(
                [sys.executable, "-m", "mqi_communicator", "check-config", "--config", str(config)],
                capture_output=True,
                text=True,
            )
            if check.returncode != 0:
                hint = f" (the {args.pool_key} knob has not landed?)" if args.mode == "pool" else ""
                raise SystemExit(f"config refused{hint}: {check.stdout}{check.stderr}".strip())
            engine = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mqi_communicator",
                    "run",
                    "--quiet",
                    "--config",
                    str(config),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(base / "engine.err").open("wb"),
                start_new_session=True,
            )
            db = base / "mqi.db"
            deadline = time.monotonic() + 60
            while not statuses(db) and not (base / "mqi.log").exists():
                if engine.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"engine did not start: {(base / 'engine.err').read_text()}")
                time.sleep(0.1)
            time.sleep(1.0)  # let the engine finish its first tick before the drop
            watch = Watch(link.host_if, base / "remote").start()
            t0 = time.time()
            for case in sorted((base / "staging").iterdir()):
                case.rename(base / "watch" / case.name)
            deadline = time.monotonic() + args.timeout
            while True:
                st = statuses(db)
                if len(st) == args.cases and all(s in ("completed", "failed") for s in st):
                    break
                if engine.poll() is not None:
                    raise SystemExit(f"engine exited: {(base / 'engine.err').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"not done after {args.timeout:g} s: {st}")
                time.sleep(0.2)
            done = completion_times(db)
            watch.stop()
            engine.send_signal(signal.SIGTERM)
            engine.wait(60)
            engine = None
        failed = args.cases - len(done)
        jobs = {}
        for name, (gpu, _, _) in done.items():
            out = base / "results" / name  # holds what the job wrote into output/
            start = float((out / "start").read_text())
            end = float((out / "end").read_text())
            jobs[name] = (gpu, start, end)
        makespan = max(t for _, t, _ in done.values()) - t0
        per_case = total / args.cases / link_bps
        bound = max(total / link_bps, args.cases * args.job_s / args.gpus) + per_case
        idle = idle_while_waiting(jobs, t0, [f"gpu-server/gpu{i}" for i in range(args.gpus)])
        mode = args.mode if args.mode == "inline" else f"pool ({args.pool_key}={args.pool_value})"
        print(
            f"{args.cases} cases x {args.mb:g} MB random, {args.gpus} GPUs, jobs {args.job_s:g} s, "
            f"link {args.rate} (tc tbf, netns); engine {mode}; {failed} failed"
        )
        print(f"{'makespan':34} {makespan:8.1f} s")
        print(
            f"{'lower bound':34} {bound:8.1f} s  (max({total / link_bps:.1f} s link, "
            f"{args.cases * args.job_s / args.gpus:.1f} s GPUs) + {per_case:.1f} s one transfer)"
        )
        print(
            f"{'makespan / lower bound':34} {makespan / bound:8.2f}   (goal <= 1.15 with the pool)"
        )
        print(f"{'GPU idle while cases waited':34} {idle:8.1f} GPU-s")
        first = min(s for _, s, _ in jobs.values()) - t0
        print(f"{'first job start after the drop':34} {first:8.1f} s")
        by_id = {cid: (jobs[n][1], jobs[n][2], at) for n, (_, at, cid) in done.items()}
        lines = summary(watch, t0, link_bps, by_id)
        if not args.detail:  # without the per-case timeline
            lines = [x for x in lines if not x.startswith((" ", "per case"))]
        print("\n".join(lines))
        return makespan, bound
    finally:
        if engine is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()
        import shutil

        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
