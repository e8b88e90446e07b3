"""``gpus list|offline|online``: the GPU pool."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from ..persistence import GpuRecord
from .common import config_option, open_communicator
from .output import echo_json, render_table

__all__ = ["gpu_table", "gpus"]


@click.group()
def gpus() -> None:
    """List GPUs, or take one out of the pool and back."""


def gpu_table(records: Sequence[GpuRecord]) -> str:
    """The GPUs as a table: name, host, state, case, job, since."""
    rows = [
        [
            g.name,
            g.host,
            g.status,
            g.case_id,
            g.job_label,
            g.job_id,
            "yes" if g.offline_requested else "",
            g.status_updated_at,
        ]
        for g in records
    ]
    headers = ["NAME", "HOST", "STATE", "CASE", "JOB LABEL", "JOB ID", "OFFLINE REQ", "SINCE (UTC)"]
    return render_table(headers, rows)


@gpus.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
def list_gpus(as_json: bool, config_path: Path | None) -> None:
    """List the GPU resources and their states."""
    with open_communicator(config_path) as comm:
        records = comm.gpus()
    if as_json:
        echo_json(records)
    else:
        click.echo(gpu_table(records))


def _describe(g: GpuRecord, offline: bool) -> str:
    if offline and g.status.value != "offline":
        return (
            f"gpu {g.name}: offline requested; it is {g.status.value} and goes offline once "
            "its job is provably gone"
        )
    return f"gpu {g.name}: {g.status.value}"


@gpus.command("offline")
@click.argument("name")
@config_option
def gpu_offline(name: str, config_path: Path | None) -> None:
    """Take GPU NAME out of the pool (after its current job, if any, is gone)."""
    with open_communicator(config_path) as comm:
        g = comm.set_gpu_offline(name, True)
    click.echo(_describe(g, True))


@gpus.command("online")
@click.argument("name")
@config_option
def gpu_online(name: str, config_path: Path | None) -> None:
    """Bring GPU NAME back into the pool."""
    with open_communicator(config_path) as comm:
        g = comm.set_gpu_offline(name, False)
    click.echo(_describe(g, False))
