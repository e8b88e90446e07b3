"""kill -9 the communicator at random moments; after every restart it must carry on.

The engine runs as a real subprocess (``mqi-communicator run``) on SQLite and the local
scheduler. A *run* is one engine process. Each scenario starts an engine, watches the
database read-only, and kills the process (kill -9) while a case is uploading,
submitting, running or retrieving (or at a random time); then it starts the next engine
on the same database, and so on, dropping new cases between kills; a last engine finishes
the work and is stopped with SIGTERM. At least 20 runs end in kill -9. Per scenario:

* every case ends in the right terminal state (completed; failed with exit code 3
  for the deliberately failing one);
* the GPU audit trail never assigns one GPU to two cases at once, and every GPU
  is available and unowned at the end (nothing leaked);
* results_dir holds exactly the completed cases' folders, each complete and equal to
  what the job wrote (staging stays under ``.mqi-staging``).

The seed and the counts are printed (``-s`` shows them); set ``MQI_CRASH_SEED`` to
replay, ``MQI_CRASH_SCENARIOS`` / ``MQI_CRASH_KILLS`` to change the amount of work.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mqi_communicator import CaseState, GpuState
from mqi_communicator.persistence import Store
from tests.infra.pueue import PueueStandin
from tests.infra.sshd import SshServer

from .conftest import ssh_host
from .crash_support import (
    TERMINAL,
    CrashWorkspace,
    DbWatcher,
    check_gpu_audit,
    check_results,
    phase_of,
    wait_for,
)

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("MQI_CRASH_SEED", "4242"))
SCENARIOS = int(os.environ.get("MQI_CRASH_SCENARIOS", "5"))
KILLS_PER_SCENARIO = int(os.environ.get("MQI_CRASH_KILLS", "4"))
PHASES = ("upload", "submit", "running", "retrieve", "anytime")


def _kill_at(
    ws: CrashWorkspace,
    watcher: DbWatcher,
    target: str,
    dropped: int,
    rng: random.Random,
    tally: Counter[str],
) -> bool:
    """Start an engine and kill -9 it once a case shows ``target`` (or at a random time).

    Returns True when the kill landed in ``target`` (the database still shows it).
    """
    proc = ws.start()
    seen: list[str] = []

    def hit() -> bool:
        if proc.poll() is not None:
            return True
        cases = watcher.cases()
        if target in {phase_of(s, p) for _, s, p in cases}:
            seen.append(target)
            return True
        # Every dropped case already ended: that phase will not come again.
        return len(cases) == dropped and all(s in TERMINAL for _, s, _ in cases)

    if target == "anytime":
        time.sleep(rng.uniform(0.3, 6.0))  # start-up (imports) included
        seen.append("anytime")
    else:
        wait_for(hit, limit_s=20.0)
    assert proc.poll() is None, f"the engine died on its own: see {ws.root / 'logs'}"
    time.sleep(rng.uniform(0, 0.004))  # not always at the very start of the phase
    ws.kill9(proc)
    # What the database shows right after the kill is the phase that was cut short.
    after = {phase_of(s, p) for _, s, p in watcher.cases()} - {None}
    watcher.check_claims()  # the database as the crash left it: no leak, no double claim
    tally["kills"] += 1
    landed = bool(seen) and (target == "anytime" or target in after)
    tally[f"kill in {target}" if landed else f"missed {target}"] += 1
    return landed


def _one_scenario(
    root: Path,
    targets: list[str],
    rng: random.Random,
    tally: Counter[str],
    host: dict[str, Any] | None = None,
    gpu_keys: dict[str, str] | None = None,
) -> None:
    ws = CrashWorkspace(root, host=host, gpu_keys=gpu_keys or {})
    ws.write_config()
    watcher = DbWatcher(ws.db)
    good = [f"patient {i:02d}" for i in range(5)]
    bad = "bad plan"
    # Cases arrive over time: some are found by the start-up scan of an engine, some
    # by the watcher of a running one.
    arrivals = {0: [good[0], bad], 1: [good[1], good[2]], 2: [good[3]], 3: [good[4]]}
    try:
        dropped = 0
        for i, target in enumerate(targets):
            for name in arrivals.pop(i, []):
                ws.drop_case(name, failing=name == bad)
                dropped += 1
            # A phase can be short (a local upload of a few MB): aim again if missed.
            for _ in range(3):
                if _kill_at(ws, watcher, target, dropped, rng, tally):
                    break
        for names in arrivals.values():
            for name in names:
                ws.drop_case(name, failing=name == bad)

        final = ws.start()

        def all_ended() -> bool:
            cases = watcher.cases()
            return len(cases) == len(good) + 1 and all(s in TERMINAL for _, s, _ in cases)

        assert wait_for(all_ended, limit_s=90, interval=0.05), (
            f"cases never ended: {watcher.cases()}; see {ws.root / 'logs'}"
        )
        watcher.close()
        assert ws.stop(final) == 0
        tally["scenarios"] += 1

        store = Store.open("sqlite:///" + ws.db.as_posix())
        try:
            cases = {c.name: c for c in store.list_cases()}
            assert sorted(cases) == sorted([*good, bad])
            for name in good:
                assert cases[name].status is CaseState.COMPLETED, cases[name]
            assert cases[bad].status is CaseState.FAILED
            assert "job exited with code 3" in (cases[bad].failure_reason or "")
            tally["cases"] += len(cases)
            tally["retries after a cut-short submit"] += sum(c.attempt - 1 for c in cases.values())
            tally["gpu assignments"] += check_gpu_audit(store)
            for gpu in store.list_gpus():
                assert gpu.status is GpuState.AVAILABLE and gpu.case_id is None, gpu
            check_results(ws, store, good)
        finally:
            store.close()
    finally:
        watcher.close()
        ws.cleanup()


def test_kill_9_at_random_moments_keeps_every_promise(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"\ncrash test: seed {SEED} (MQI_CRASH_SEED)")
    tally: Counter[str] = Counter()
    started = time.monotonic()
    # Every phase is aimed at about equally often, in a seeded random order.
    total = SCENARIOS * KILLS_PER_SCENARIO
    targets = [PHASES[i % len(PHASES)] for i in range(total)]
    rng.shuffle(targets)
    for n in range(SCENARIOS):
        root = tmp_path / f"scenario{n:02d}"
        mine = targets[n * KILLS_PER_SCENARIO : (n + 1) * KILLS_PER_SCENARIO]
        _one_scenario(root, mine, rng, tally)
        shutil.rmtree(root, ignore_errors=True)  # a few MB per case: keep /tmp small
    elapsed = time.monotonic() - started
    runs = tally["kills"] + tally["scenarios"]
    print(
        f"crash test: seed {SEED}: {tally['scenarios']} scenarios, {runs} engine runs "
        f"({tally['kills']} ended by kill -9), {tally['cases']} cases, {elapsed:.0f} s"
    )
    for key in sorted(tally):
        print(f"  {key}: {tally[key]}")
    assert tally["scenarios"] == SCENARIOS
    if SCENARIOS * KILLS_PER_SCENARIO >= 20:
        assert tally["kills"] >= 20
    # The phases that matter most were really hit (not just aimed at).
    for phase in ("upload", "running", "retrieve"):
        assert tally[f"kill in {phase}"] > 0, f"no kill landed in {phase}: {dict(tally)}"


@pytest.mark.ssh
def test_kill_9_over_ssh_with_the_pueue_stand_in(
    tmp_path: Path, live_sshd: SshServer, pueue: PueueStandin
) -> None:
    """The same promises with the Pueue stand-in behind the real sshd (one scenario)."""
    rng = random.Random(SEED + 1)
    print(f"\ncrash test over SSH + Pueue: seed {SEED + 1}")
    pueue.cli("parallel", "2", "-g", "default", check=True)  # both GPUs map to one group
    root = tmp_path / "pueue-ssh"
    scheduler = {
        "kind": "pueue",
        "pueue_command": pueue.command,
        "kill_grace_s": 1,
        "timeout_s": 30,
    }
    host = ssh_host(live_sshd, scheduler, root / "remote")
    targets = ["upload", "submit", "running", "retrieve"]
    rng.shuffle(targets)
    tally: Counter[str] = Counter()
    started = time.monotonic()
    _one_scenario(root, targets, rng, tally, host=host, gpu_keys={"pueue_group": "default"})
    print(
        f"crash test over SSH + Pueue: seed {SEED + 1}: "
        f"{tally['kills'] + tally['scenarios']} engine runs ({tally['kills']} ended by "
        f"kill -9), {tally['cases']} cases, {time.monotonic() - started:.0f} s"
    )
    for key in sorted(tally):
        print(f"  {key}: {tally[key]}")
    assert tally["scenarios"] == 1
