"""Poll 200 running Pueue jobs: ONE batched PueueScheduler.poll over SSH vs one `ssh` per job.

Starts the Pueue stand-in daemon and a loopback sshd (tests/infra helpers), submits 200
long-running jobs through PueueScheduler (locally: submission is not what is measured),
then times, over SSH:

* batched: one ``PueueScheduler.poll`` for all 200 refs (status --json + marker probe in
  ONE remote command over the kept connection), median of 5;
* per-job baseline (what the original system did): a fresh ``ssh`` process per job running
  ``pueue status --json``. Only 20 are timed; the total for 200 is extrapolated (x10).

Run: ``python bench/bench_poll.py [--jobs 200] [--sample 20] [--port 22555]``.
Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqi_communicator.remote.protocol import GpuBinding, JobSpec
from mqi_communicator.remote.schedulers.pueue.scheduler import PueueScheduler
from mqi_communicator.remote.transport.local import LocalTransport
from mqi_communicator.statemachine.jobs import JobState
from tests.infra.pueue import PueueStandin
from tests.infra.sshd import make_ssh_transport, start_sshd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--sample", type=int, default=20)
    ap.add_argument("--port", type=int, default=22555)
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="mqi-bench-"))
    pueue = PueueStandin(4)
    server = None
    transport = None
    try:
        pueue.start()
        pueue.cli("group", "add", "gpu0", "-p", "0", check=True)  # unlimited parallel
        server = start_sshd(base / "sshd", args.port)
        transport = make_ssh_transport(server)
        sched = PueueScheduler(transport, pueue.command, timeout=120)
        # Submitting is not what is measured: do it through LocalTransport (same host,
        # same daemon) to save ~1 s of SSH login-shell start-up per job.
        submitter = PueueScheduler(LocalTransport(), pueue.command, timeout=120)
        gpu = GpuBinding(name="gpu0", pueue_group="gpu0")
        refs = []
        t_submit = time.perf_counter()
        for i in range(args.jobs):
            case = base / "cases" / f"mqic_case_{i}_a1"
            case.mkdir(parents=True)
            refs.append(
                submitter.submit(
                    JobSpec(
                        f"mqic_case_{i}_a1",
                        str(case),
                        ["sleep", "900"],
                        gpu,
                        token=secrets.token_hex(16),
                    )
                )
            )
        t_submit = time.perf_counter() - t_submit
        deadline = time.monotonic() + 60
        while True:
            states = {s.state for s in sched.poll(refs).values()}
            if states == {JobState.RUNNING} or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        if states != {JobState.RUNNING}:
            raise SystemExit(f"jobs did not all start: {states}")

        batched = []
        for _ in range(5):
            t0 = time.perf_counter()
            statuses = sched.poll(refs)
            batched.append(time.perf_counter() - t0)
            assert len(statuses) == args.jobs
            assert all(s.state is JobState.RUNNING for s in statuses.values())
        one_poll = statistics.median(batched)

        ssh = [
            "ssh",
            "-p",
            str(server.port),
            "-i",
            str(server.key_path),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={server.known_hosts}",
            f"{server.user}@{server.host}",
        ]
        status_cmd = shlex.join([*pueue.command, "status", "--json"])
        t0 = time.perf_counter()
        for _ in range(args.sample):
            subprocess.run([*ssh, status_cmd], check=True, capture_output=True, timeout=60)
        per_job = (time.perf_counter() - t0) / args.sample
        baseline = per_job * args.jobs

        print(f"jobs running: {args.jobs} (submitted locally in {t_submit:.1f} s)")
        print(
            f"batched: ONE PueueScheduler.poll over SshTransport: {one_poll * 1000:.1f} ms "
            f"(median of 5: {', '.join(f'{b * 1000:.0f}' for b in batched)} ms)"
        )
        print(
            f"per-job: fresh `ssh ... pueue status --json`: {per_job * 1000:.1f} ms each; "
            f"{args.sample} timed, x{args.jobs / args.sample:g} extrapolated to "
            f"{baseline:.2f} s for {args.jobs}"
        )
        print(f"ratio (per-job total / batched): {baseline / one_poll:.0f}x (target >= 100x)")
    finally:
        if transport is not None:
            transport.close()
        pueue.cleanup()
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
