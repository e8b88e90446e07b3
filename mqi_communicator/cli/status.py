"""``status``: one screen with case counts per state, GPUs per state, and the zombies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..persistence import GpuRecord
from ..service import Communicator
from ..statemachine import GpuState
from .common import config_option, open_communicator
from .output import echo_json, render_table

__all__ = ["status", "summarize"]


def summarize(comm: Communicator) -> dict[str, Any]:
    """Counts per case state and GPU state (every state, zeros included), and the zombies.

    Counting is done by the database, so this stays cheap with many finished cases.
    """
    summary = comm.summary()
    gpus = comm.gpus()
    return {
        "cases": summary["cases"],
        "gpus": summary["gpus"],
        "zombies": [g for g in gpus if g.status is GpuState.ZOMBIE],
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@config_option
def status(as_json: bool, config_path: Path | None) -> None:
    """Summary: cases per state, GPUs per state, and every zombie GPU."""
    with open_communicator(config_path) as comm:
        summary = summarize(comm)
    if as_json:
        echo_json(summary)
        return
    cases_total = sum(summary["cases"].values())
    click.echo(
        render_table(
            ["CASE STATE", "COUNT"],
            [*summary["cases"].items(), ("total", cases_total)],
        )
    )
    click.echo("")
    click.echo(render_table(["GPU STATE", "COUNT"], list(summary["gpus"].items())))
    zombies: list[GpuRecord] = summary["zombies"]
    click.echo("")
    if not zombies:
        click.echo("zombies: none")
        return
    click.echo(f"zombies ({len(zombies)}): a job we placed may still run; re-checked with backoff")
    rows = [
        [
            g.name,
            g.host,
            g.quarantined_case_id,
            g.job_label,
            g.job_id,
            g.status_updated_at,
            g.next_check_at,
        ]
        for g in zombies
    ]
    headers = ["NAME", "HOST", "CASE", "JOB LABEL", "JOB ID", "SINCE (UTC)", "NEXT CHECK"]
    click.echo(render_table(headers, rows))
    click.echo(
        "a zombie whose host is gone for good: "
        "`mqi-communicator gpus release NAME --confirm-job-gone --reason TEXT`"
    )
