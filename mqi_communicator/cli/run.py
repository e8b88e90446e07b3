"""``run``: the communicator service in the foreground, with live progress."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from ..config import Config, load_config
from ..config.layout import missing_folders
from ..logsetup import setup_logging, teardown_logging
from ..service import Communicator
from .common import config_option, resolve_config
from .output import EXIT_USAGE, cli_errors, fail
from .progress import ProgressPrinter

__all__ = ["run", "stop_on_signals"]


@contextmanager
def stop_on_signals(
    stop: threading.Event, printer: ProgressPrinter | None = None
) -> Iterator[None]:
    """While active, SIGTERM and SIGINT set ``stop`` (the engine aborts transfers and stops).

    A second signal while stopping is honoured at once with the default handler.
    Only the main thread may install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():  # asked twice: give up waiting
            signal.signal(signum, previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        stop.set()
        if printer is not None:
            printer.note(f"{signal.Signals(signum).name}: stopping after the current step")

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[int(sig)] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _refuse_missing_folders(config: Config) -> None:
    """Exit 2 when watch_dir or results_dir is missing (see ``config.layout``)."""
    missing = missing_folders(config)
    if missing:
        named = ", ".join(f"{key} {folder}" for key, folder in missing)
        fail(
            f"{named}: no such folder; create it (or mount the share it lives on) and "
            "start again; run never creates these, so an unmounted share is not replaced "
            "by an empty local folder",
            EXIT_USAGE,
        )


@click.command()
@click.option("--once", is_flag=True, help="Run a single reconcile tick, then exit.")
@click.option("--quiet", is_flag=True, help="No live progress lines (the log file still has all).")
@config_option
def run(once: bool, quiet: bool, config_path: Path | None) -> None:
    """Run the communicator: watch the folder, run cases, bring results home.

    Stops on SIGTERM or Ctrl-C within 5 s: transfers in flight are aborted and
    nothing is submitted after the signal; the next start recovers those cases.
    With --once, waits for the transfers the tick started. Logs go to the rotating
    file named by log.file in the config (in log.timezone). On SQLite only one
    engine may run per database; a second one is refused. A missing watch_dir or
    results_dir is refused (exit 2), never created.
    """
    path = resolve_config(config_path)
    printer = ProgressPrinter()
    stop = threading.Event()
    with cli_errors():
        config = load_config(path)
        _refuse_missing_folders(config)
        log_file = setup_logging(config.log)
        comm = Communicator(config, progress=None if quiet else printer.transfer)
        try:
            if not quiet:
                printer.prime(comm)
                where = f", log {log_file}" if log_file else ""
                printer.note(f"mqi-communicator running ({path}{where}); Ctrl-C to stop")

            def on_tick(*_args: object) -> None:
                if not quiet:
                    printer.update(comm)

            if once:
                comm.tick()
                on_tick()
                return
            with stop_on_signals(stop, printer):
                comm.run_forever(stop, on_tick=on_tick)
            printer.note("stopped")
        finally:
            comm.close()
            teardown_logging()
