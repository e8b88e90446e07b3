"""``status``: case counts per state, GPUs per state, the hosts' health, and the zombies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..console.snapshot import describe_health, fault_text
from ..display import held_back
from ..persistence import CaseRecord, GpuRecord
from ..persistence.case_faults import held_back_cases
from ..persistence.host_health import HostHealthRecord
from ..service import Communicator
from ..statemachine import GpuState
from ..textsafe import printable
from .common import config_option, open_communicator
from .output import echo_json, render_table

__all__ = [
    "gpu_fault_lines",
    "held_back_table",
    "host_table",
    "poll_fault_lines",
    "status",
    "summarize",
]


def summarize(comm: Communicator) -> dict[str, Any]:
    """Counts per case state and GPU state (every state, zeros included), the configured
    hosts' persisted health (None: never contacted), and the zombies.

    Counting is done by the database, so this stays cheap with many finished cases.
    """
    summary = comm.summary()
    gpus = comm.gpus()
    health = comm.host_health()
    with comm.store.reading() as s:
        held = held_back_cases(s, datetime.now(UTC))
    return {
        "cases": summary["cases"],
        "gpus": summary["gpus"],
        "hosts": {h: health.get(h) for h in comm.config.hosts},
        "zombies": [g for g in gpus if g.status is GpuState.ZOMBIE],
        "held_back": held,
    }


def held_back_table(held: list[CaseRecord]) -> str:
    """Live cases that back off or keep failing: why, how often, and when next."""
    now = datetime.now(UTC)
    shown = [h for c in held if (h := held_back(c, now)) is not None]
    rows = [[h.case_id, h.name, h.state, h.tries, h.next_attempt_at, h.why] for h in shown]
    headers = ["CASE", "NAME", "STATE", "TRIES", "NEXT ATTEMPT (UTC)", "WHY"]
    return render_table(headers, rows)


def host_table(hosts: dict[str, HostHealthRecord | None]) -> str:
    """The hosts' health as a table (the engine's view, read from the database)."""
    now = datetime.now(UTC)
    rows = []
    for name, rec in hosts.items():
        word, _ = describe_health(rec, now)
        rows.append(
            [
                name,
                word.upper() if word == "down" else word,
                rec.since if rec else None,
                rec.failures if rec else None,
                rec.next_retry_at if rec else None,
                " ".join(rec.last_error.split()) if rec and rec.last_error else None,
            ]
        )
    headers = ["HOST", "HEALTH", "SINCE (UTC)", "FAILURES", "NEXT TRY (UTC)", "LAST ERROR"]
    return render_table(headers, rows)


def poll_fault_lines(hosts: dict[str, HostHealthRecord | None]) -> list[str]:
    """``poll on HOST failing (...)`` for each host whose poll backs off after local errors."""
    out = []
    for name, rec in hosts.items():
        text = fault_text(rec.poll_failures, rec.poll_error, rec.poll_next_at) if rec else None
        if text:
            out.append(f"poll on {printable(name)} {text}")
    return out


def gpu_fault_lines(gpus: list[GpuRecord]) -> list[str]:
    """``GPU NAME: check failing (...)`` for each GPU whose checks back off after local errors."""
    out = []
    for g in gpus:
        text = fault_text(g.local_failures, g.last_error, g.next_attempt_at)
        if text:
            out.append(f"GPU {printable(g.name)}: check {text}")
    return out


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@config_option
def status(as_json: bool, config_path: Path | None) -> None:
    """Summary: cases per state, GPUs per state, hosts' health, and every zombie GPU."""
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
    click.echo("")
    click.echo(host_table(summary["hosts"]))
    for line in poll_fault_lines(summary["hosts"]):
        click.echo(line)
    held: list[CaseRecord] = summary["held_back"]
    if held:
        click.echo("")
        click.echo(f"cases held back ({len(held)}): backing off after an error, or waiting")
        click.echo(held_back_table(held))
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
            g.local_failures or None,
        ]
        for g in zombies
    ]
    headers = ["NAME", "HOST", "CASE", "JOB LABEL", "JOB ID", "SINCE (UTC)", "NEXT CHECK"]
    click.echo(render_table([*headers, "CHECK FAILURES"], rows))
    for line in gpu_fault_lines(zombies):
        click.echo(line)
    click.echo(
        "a zombie whose host is gone for good: "
        "`mqi-communicator gpus release NAME --confirm-job-gone --reason TEXT`"
    )
