"""``gpus list|offline|online|release``: the GPU pool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from ..persistence import GpuRecord
from ..statemachine import GpuState
from ..zombie_release import release_checklist
from .common import config_option, open_communicator
from .output import EXIT_FAILURE, EXIT_USAGE, echo_json, fail, render_table
from .status import gpu_fault_lines, poll_fault_lines

__all__ = ["gpu_table", "gpus"]


@click.group()
def gpus() -> None:
    """List GPUs, take one out of the pool and back, or release a zombie on your word."""


def gpu_table(records: Sequence[GpuRecord], health: Mapping[str, str] | None = None) -> str:
    """The GPUs as a table: name, host, state, case (a zombie's: its stuck job's), job,
    since, and the host's health. ``health``: host -> up/down (absent: unknown)."""
    known = health or {}
    rows = [
        [
            g.name,
            g.host,
            g.status,
            g.case_id,
            g.quarantined_case_id,
            g.job_label,
            g.job_id,
            "yes" if g.offline_requested else "",
            g.status_updated_at,
            (known.get(g.host, "unknown") if g.host else "-").replace("down", "DOWN"),
        ]
        for g in records
    ]
    headers = [
        "NAME",
        "HOST",
        "STATE",
        "CASE",
        "ZOMBIE OF CASE",
        "JOB LABEL",
        "JOB ID",
        "OFFLINE REQ",
        "SINCE (UTC)",
        "HOST HEALTH",
    ]
    return render_table(headers, rows)


@gpus.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
def list_gpus(as_json: bool, config_path: Path | None) -> None:
    """List the GPU resources, their states, and their hosts' health as last recorded."""
    with open_communicator(config_path) as comm:
        records = comm.gpus()
        recorded = comm.host_health()
    health = {h: "up" if rec.up else "down" for h, rec in recorded.items()}
    if as_json:
        echo_json(records)
        return
    click.echo(gpu_table(records, health))
    # Checks and polls backing off after local errors (engine/fault.py), as `status` says.
    for line in [*gpu_fault_lines(records), *poll_fault_lines(dict(recorded))]:
        click.echo(line)


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


@gpus.command("release")
@click.argument("name")
@click.option(
    "--confirm-job-gone",
    is_flag=True,
    help="You checked on the host that the zombie's job is gone (required).",
)
@click.option("--reason", default="", help="Why the job is known to be gone (required).")
@config_option
def gpu_release(name: str, confirm_job_gone: bool, reason: str, config_path: Path | None) -> None:
    """Release zombie GPU NAME on your word that its job is gone (audited: who, when, why).

    For a zombie whose job can no longer be observed (host reinstalled or retired).
    Without --confirm-job-gone and a non-empty --reason it refuses (exit 2) and lists
    what to check on the host first.
    """
    with open_communicator(config_path) as comm:
        gpu = next((g for g in comm.gpus() if g.name == name), None)
        if gpu is None:
            fail(f"no GPU named {name!r}", EXIT_FAILURE)
        if gpu.status is not GpuState.ZOMBIE:
            fail(
                f"gpu {name} is {gpu.status.value}, not a zombie: only a zombie can be "
                "released on the operator's word",
                EXIT_FAILURE,
            )
        if not confirm_job_gone or not reason.strip():
            fail(release_checklist(gpu), EXIT_USAGE)
        released = comm.release_zombie(name, reason=reason, confirm_job_gone=True)
    click.echo(
        f"gpu {released.name}: {released.status.value} (released on your word: {reason.strip()})"
    )
