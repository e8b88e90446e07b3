"""Run every benchmark of the communicator, one after the other, printing their figures.

Usage: python bench/run_all.py [--quick]

``--quick`` shrinks each benchmark (fewer runs, 200 jobs, 2,000 finished cases) for a
smoke run; the figures for the record come from the default sizes. Each benchmark is
its own process (so one's sshd/daemons/leftovers cannot affect the next); asserts
nothing, exits non-zero only if a benchmark crashed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES: list[tuple[str, list[str], list[str]]] = [
    ("bench_intake.py", [], ["--quiescence", "0.5", "2", "--runs", "2"]),
    ("bench_tick.py", [], ["--jobs", "200", "--finished", "2000", "--sample", "10"]),
    ("bench_poll.py", [], ["--jobs", "50", "--sample", "5"]),
    ("bench_transfer.py", [], ["--scale", "0.05", "--repeat", "1"]),
    ("bench_web.py", [], ["--cases", "10000", "--repeat", "5"]),
    ("bench_top.py", [], ["--cases", "5000", "--runs", "3"]),
    # these two need root (netns + tc) and say so, exiting non-zero, without it
    ("bench_compression.py", [], ["--slices", "60", "--repeat", "1"]),
    ("bench_throughput.py", [], ["--cases", "4", "--mb", "10", "--job-s", "2"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    failed = []
    for name, full, quick in BENCHES:
        script = HERE / name
        if not script.exists():
            print(f"== {name}: not present, skipped")
            continue
        argv = [sys.executable, str(script), *(quick if args.quick else full)]
        print(f"== {name} {' '.join(argv[2:])}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run(argv, check=False).returncode
        print(f"== {name}: exit {rc}, {time.monotonic() - t0:.0f} s\n", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print("crashed: " + ", ".join(failed))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
