"""``cases log ID [--follow] [--lines N]``: the job's output log, read over its host."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import click

from ..remote.job.log import LogChunk
from ..service import Communicator
from ..statemachine import TERMINAL_CASE_STATES
from .common import config_option, interval_option, open_communicator

__all__ = ["case_log"]


def _write(chunk: LogChunk) -> None:
    # Raw bytes: the log is the job's, shown as it is (undecodable bytes stay bytes).
    sys.stdout.buffer.write(chunk.data)
    sys.stdout.buffer.flush()


def _follow(comm: Communicator, case_id: int, offset: int, interval: float) -> None:
    """Print new bytes until the case has ended and nothing more arrives."""
    remote_dir = comm.case(case_id).remote_dir
    while True:
        case = comm.case(case_id)
        if case.remote_dir != remote_dir and case.remote_dir is not None:
            # A new attempt writes a new log: start it from the beginning.
            click.echo(f"--- attempt {case.attempt}: {case.remote_dir} ---", err=True)
            remote_dir, offset = case.remote_dir, 0
        ended = case.status in TERMINAL_CASE_STATES
        if case.remote_dir is not None:
            chunk = comm.job_log_tail(case_id, offset=offset)
            if chunk.exists:
                if chunk.start < offset:
                    click.echo("--- the log was truncated; from its start ---", err=True)
                _write(chunk)
                offset = chunk.end
                if chunk.end < chunk.size:
                    continue  # more than one read's worth is waiting
        if ended:
            return
        time.sleep(interval)


@click.command("log")
@click.argument("case_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the case ends.")
@click.option(
    "--lines",
    "-n",
    type=click.IntRange(0, 100_000),
    default=100,
    show_default=True,
    help="How many of the last lines to print first.",
)
@interval_option(minimum=0.1, default=1.0, help="With --follow: seconds between reads.")
@config_option
def case_log(
    case_id: int, follow: bool, lines: int, interval: float, config_path: Path | None
) -> None:
    """Print the tail of case CASE_ID's job log (fetched over ssh, or locally)."""
    with open_communicator(config_path) as comm:
        waiting = follow and comm.case(case_id).remote_dir is None  # not started: wait for it
        chunk = LogChunk(exists=False) if waiting else comm.job_log_tail(case_id, lines=lines)
        if chunk.exists:
            _write(chunk)
        elif not follow:
            click.echo(f"case {case_id}: no job log yet (the job has not started)", err=True)
        if follow:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends following, quietly
                _follow(comm, case_id, chunk.end if chunk.exists else 0, interval)
