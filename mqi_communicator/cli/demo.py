"""``demo``: the whole pipeline on this machine, with no setup at all."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import click

from ..config import load_config
from ..logsetup import setup_logging, teardown_logging
from ..persistence import CaseRecord
from ..service import Communicator
from ..statemachine import TERMINAL_CASE_STATES, CaseState
from .demo_workspace import DemoWorkspace, create_workspace, drop_sample_case
from .output import EXIT_FAILURE, cli_errors, render_table
from .progress import ProgressPrinter
from .run import stop_on_signals

__all__ = ["demo"]

_STAMP = ".mqi-result.json"


def _result_files(ws: DemoWorkspace, case: CaseRecord) -> list[str]:
    folder = ws.results_dir / case.name
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != _STAMP
    )


def _summary(ws: DemoWorkspace, cases: list[CaseRecord]) -> str:
    rows = []
    for c in cases:
        end = c.completed_at or c.status_updated_at
        rows.append(
            [
                c.id,
                c.name,
                c.status.value,
                c.attempt,
                f"{(end - c.created_at).total_seconds():.1f}",
                ", ".join(_result_files(ws, c)) or "-",
            ]
        )
    return render_table(["ID", "CASE", "STATE", "ATTEMPTS", "SECONDS", "RESULT FILES"], rows)


def _all_done(cases: list[CaseRecord], expected: int) -> bool:
    return len(cases) >= expected and all(c.status in TERMINAL_CASE_STATES for c in cases)


@click.command()
@click.option("--cases", "n_cases", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option(
    "--seconds",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0, 60),
    help="How long each stand-in simulation runs.",
)
@click.option("--gpus", "n_gpus", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--keep", is_flag=True, help="Keep the workspace afterwards (default: delete it).")
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Give up if the cases are not all finished after this many seconds.",
)
def demo(n_cases: int, seconds: float, n_gpus: int, keep: bool, timeout: float) -> None:
    """Run sample cases end to end on this machine, with nothing to set up.

    Creates a temporary workspace holding a SQLite database, a watch folder, a
    results folder and a config that uses the local transport and the local
    scheduler with GPUs local/gpu0.. (CUDA_VISIBLE_DEVICES "0", "1", ...). The job
    command is a STAND-IN for MOQUI's interpreter + moquisim: a small Python script
    that reads the case, waits --seconds, and writes output/dose.raw and
    output/summary.json. The demo drops --cases sample cases (small DICOM-like
    files) into the watch folder, runs the real engine, prints every state change,
    and checks that each case is completed with its results downloaded and
    verified. It ends with a summary and the workspace path (kept with --keep, or
    when something went wrong).
    """
    root = Path(tempfile.mkdtemp(prefix="mqi-demo-"))
    ok = False
    try:
        ok = _run_demo(root, n_cases, seconds, n_gpus, timeout)
    finally:
        if keep or not ok:
            click.echo(f"workspace kept: {root}  (config: {root / 'mqi-communicator.yaml'})")
            click.echo(f"  try: mqi-communicator status --config {root / 'mqi-communicator.yaml'}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            click.echo(f"workspace {root} deleted (use --keep to keep it)")
    if not ok:
        raise SystemExit(EXIT_FAILURE)


def _run_demo(root: Path, n_cases: int, seconds: float, n_gpus: int, timeout: float) -> bool:
    click.echo(f"mqi-communicator demo: workspace {root}")
    with cli_errors():
        ws = create_workspace(root, seconds=seconds, gpus=n_gpus)
        config = load_config(ws.config_path)
        setup_logging(config.log)
    printer = ProgressPrinter()
    comm = Communicator(config, progress=printer.transfer)
    stop = threading.Event()
    deadline = time.monotonic() + timeout
    state: dict[str, list[CaseRecord]] = {"cases": []}

    def on_tick(*_args: object) -> None:
        printer.update(comm)
        state["cases"] = comm.cases()
        if _all_done(state["cases"], n_cases) or time.monotonic() > deadline:
            stop.set()

    try:
        with cli_errors():
            printer.note(
                f"{n_gpus} GPU(s) on the local scheduler; dropping {n_cases} sample case(s) "
                f"into {ws.watch_dir}"
            )
            for i in range(1, n_cases + 1):
                drop_sample_case(ws, i)
            with stop_on_signals(stop, printer):
                comm.run_forever(stop, on_tick=on_tick)
            on_tick()
    finally:
        comm.close()
        teardown_logging()
    cases: list[CaseRecord] = state["cases"]
    click.echo("")
    click.echo(_summary(ws, cases))
    click.echo("")
    completed = [c for c in cases if c.status is CaseState.COMPLETED and _result_files(ws, c)]
    if len(completed) == n_cases and len(cases) == n_cases:
        click.echo(f"all {n_cases} cases completed; results in {ws.results_dir}")
        return True
    if not _all_done(cases, n_cases):
        click.echo(f"error: not finished after {timeout:.0f} s", err=True)
    else:
        click.echo(f"error: {n_cases - len(completed)} case(s) did not complete", err=True)
    return False
