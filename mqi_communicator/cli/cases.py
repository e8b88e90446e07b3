"""``cases list|show|retry|cancel``: look at cases and act on one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from ..display import evidence_text, fmt_time
from ..persistence import CaseRecord, TransitionRecord
from ..statemachine import TERMINAL_CASE_STATES, CaseState
from ..textsafe import printable
from .common import config_option, open_communicator
from .output import echo_json, render_table

__all__ = ["cases", "history_table"]

_STATES = [s.value for s in CaseState]

#: A case id as the database can hold it (SQLite INTEGER is 64-bit). Anything else (a
#: word, zero, a negative or a 23-digit number) is a usage error before any query.
CASE_ID = click.IntRange(1, 2**63 - 1)


@click.group()
def cases() -> None:
    """List, inspect, retry or cancel cases."""


def _case_rows(records: Sequence[CaseRecord]) -> list[list[object]]:
    return [
        [
            c.id,
            c.name,
            c.status,
            c.attempt,
            c.gpu_name,
            f"{c.progress}%",
            c.status_updated_at,
            c.failure_reason,
        ]
        for c in records
    ]


@cases.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(_STATES),
    help="Only cases in this state (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
def list_cases(states: tuple[str, ...], as_json: bool, config_path: Path | None) -> None:
    """List cases, oldest first."""
    with open_communicator(config_path) as comm:
        records = comm.cases([CaseState(s) for s in states] if states else None)
    if as_json:
        echo_json(records)
        return
    headers = ["ID", "NAME", "STATE", "ATTEMPT", "GPU", "PROGRESS", "UPDATED (UTC)", "REASON"]
    click.echo(render_table(headers, _case_rows(records)))


def history_table(rows: Sequence[TransitionRecord]) -> str:
    """The audit rows as a table: time, entity, move, trigger, evidence, detail."""
    table = [
        [
            fmt_time(t.at),
            t.entity if t.entity == "case" else f"gpu {t.gpu_name}",
            f"{t.from_state} -> {t.to_state}",
            t.trigger,
            evidence_text(t) or "-",
            t.detail or "-",
        ]
        for t in rows
    ]
    return render_table(["AT (UTC)", "WHAT", "MOVE", "TRIGGER", "EVIDENCE", "DETAIL"], table)


@cases.command("show")
@click.argument("case_id", type=CASE_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@config_option
def show_case(case_id: int, as_json: bool, config_path: Path | None) -> None:
    """Show one case and its transition history, with the evidence of each move."""
    with open_communicator(config_path) as comm:
        case = comm.case(case_id)
        history = comm.history(case_id=case_id)
    if as_json:
        echo_json({"case": case, "history": history})
        return
    fields = [
        ("id", case.id),
        ("name", case.name),
        ("path", case.path),
        ("state", case.status.value),
        ("attempt", case.attempt),
        ("progress", f"{case.progress}%"),
        ("host", case.host),
        ("gpu", case.gpu_name),
        ("job label", case.label),
        ("job id", case.job_id),
        ("remote dir", case.remote_dir),
        ("failure reason", case.failure_reason),
        ("next attempt (UTC)", fmt_time(case.next_attempt_at) if case.next_attempt_at else None),
        ("local failures", case.local_failures),
        ("last error", case.last_error),
        ("cancel requested", "yes" if case.cancel_requested else "no"),
        ("created (UTC)", fmt_time(case.created_at)),
        ("started (UTC)", fmt_time(case.started_at)),
        ("completed (UTC)", fmt_time(case.completed_at)),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        click.echo(f"{key.ljust(width)}  {'-' if value is None else printable(value)}")
    click.echo("")
    click.echo(f"history ({len(history)} transitions):")
    click.echo(history_table(history))


@cases.command("retry")
@click.argument("case_id", type=CASE_ID)
@config_option
def retry_case(case_id: int, config_path: Path | None) -> None:
    """Send a failed or cancelled case back to ``submitted`` for a new attempt."""
    with open_communicator(config_path) as comm:
        case = comm.retry(case_id)
        moves = comm.history(case_id=case_id, limit=1)
    click.echo(
        f"case {case.id} ({printable(case.name)}): {case.status.value}, attempt {case.attempt}"
    )
    # Download again or run again: the retry's audit detail says which, and why.
    how = moves[-1].detail.partition(": ")[2] if moves else ""
    if how:
        click.echo(f"  {printable(how)}")


@cases.command("cancel")
@click.argument("case_id", type=CASE_ID)
@config_option
def cancel_case(case_id: int, config_path: Path | None) -> None:
    """Cancel a case; a running job is killed by the engine, with the usual evidence rules."""
    with open_communicator(config_path) as comm:
        case = comm.cancel(case_id)
    if case.status in TERMINAL_CASE_STATES:
        click.echo(f"case {case.id} ({printable(case.name)}): {case.status.value}")
    else:
        click.echo(
            f"case {case.id} ({printable(case.name)}): cancel requested while "
            f"{case.status.value}; "
            "the running engine kills its job and then cancels it"
        )


# The job log reads over the host's transport; its own module keeps this one small.
from .case_log import case_log  # noqa: E402

cases.add_command(case_log)
