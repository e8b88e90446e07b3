"""``top``: a live full-screen view of cases, GPUs and hosts, read from the database.

It never takes the engine's lock and writes nothing, so it runs beside a running
engine (SQLite or PostgreSQL), over SSH too. When stdout is not a terminal, or with
``--once``, it prints one plain-text snapshot and exits.
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from ..config import load_config
from ..console.snapshot import Snapshot, fmt_elapsed, take_snapshot
from ..display import fmt_time
from ..persistence import Store
from .common import config_option, interval_option, resolve_config
from .output import cli_errors, render_table

__all__ = ["plain_snapshot", "top"]

#: Keys that scroll the case list, and by how many rows (a page is 10).
_SCROLL = {"j": 1, "down": 1, "k": -1, "up": -1, "pgdn": 10, " ": 10, "pgup": -10}


def plain_snapshot(snap: Snapshot, source: str) -> str:
    """The snapshot as plain-text tables (``--once``, pipes, logs)."""
    now = snap.taken_at
    counts = "  ".join(f"{s.value} {n}" for s, n in snap.counts.items())
    hosts = render_table(
        ["HOST", "HEALTH", "GPUS", "BUSY", "ZOMBIE", "OFFLINE", "LIVE CASES", "NOTE"],
        [
            [h.name, h.health, h.gpus, h.busy, h.zombies, h.offline, h.live_cases, h.detail]
            for h in snap.hosts
        ],
    )
    gpus = render_table(
        ["GPU", "STATE", "CASE", "SINCE (UTC)", "FOR", "NOTE"],
        [
            [
                g.name,
                g.state.value.upper() if g.state.value in ("zombie", "offline") else g.state,
                "-"
                if g.case_id is None
                else ("quarantines " if g.quarantined else "") + f"{g.case_id} {g.case_name or ''}",
                fmt_time(g.since),
                fmt_elapsed((now - g.since).total_seconds()),
                "offline requested" if g.offline_requested and g.state.value != "offline" else "",
            ]
            for g in snap.gpus
        ],
    )
    cases = render_table(
        ["ID", "CASE", "STATE", "GPU", "HOST", "ATT", "ELAPSED", "PROGRESS", "LAST REASON"],
        [
            [
                c.id,
                c.name,
                c.state,
                c.gpu,
                c.host,
                c.attempt,
                fmt_elapsed(c.elapsed_s),
                c.progress or "-",
                c.reason or "-",
            ]
            for c in snap.cases
        ],
    )
    more = f" ({snap.live_hidden} more live cases not shown)" if snap.live_hidden else ""
    held = [
        f"held back ({len(snap.held)}): backing off after an error, or waiting",
        render_table(
            ["CASE", "NAME", "STATE", "TRIES", "NEXT ATTEMPT (UTC)", "WHY"],
            [
                [
                    h.case_id,
                    h.name,
                    h.state,
                    h.tries,
                    f"{fmt_time(h.next_attempt_at)} ({h.next_in(now)})",
                    h.why,
                ]
                for h in snap.held
            ],
        ),
        "",
    ]
    return "\n".join(
        [
            f"mqi-communicator top  {source}  {fmt_time(now)} UTC",
            f"cases: {counts}",
            "",
            hosts,
            "",
            gpus,
            "",
            *(held if snap.held else []),
            cases + more,
        ]
    )


def _live(store: Store, hosts: list[str], interval: float, limit: int, source: str) -> None:
    from rich.console import Console
    from rich.live import Live

    from ..console.keys import KeyReader
    from ..console.render import render_screen

    console = Console()
    scroll = 0
    with KeyReader() as keys, Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            snap = take_snapshot(store, hosts, datetime.now(UTC), live_limit=limit)
            screen, scroll = render_screen(
                snap, height=console.size.height, scroll=scroll, source=source
            )
            live.update(screen, refresh=True)
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                key = keys.read(left)
                if key in ("q", "Q", "\x1b"):
                    return
                if key in _SCROLL:
                    scroll = max(0, scroll + _SCROLL[key])
                    break  # redraw at once
                if key in ("home", "g"):
                    scroll = 0
                    break


@click.command()
@click.option(
    "--once", is_flag=True, help="Print one plain snapshot and exit (default when piped)."
)
@interval_option(minimum=0.2, default=1.5, help="Seconds between refreshes.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="Live cases read per refresh (oldest first); 20 newest ended ones follow.",
)
@config_option
def top(once: bool, interval: float, limit: int, config_path: Path | None) -> None:
    """Live view of cases, GPUs (zombies, offline) and hosts; q quits.

    Reads the database only: safe beside a running engine, on SQLite and PostgreSQL.
    """
    path = resolve_config(config_path)
    with cli_errors():
        config = load_config(path)
        store = Store.open(config.database_url)
    try:
        hosts = list(config.hosts)
        if once or not sys.stdout.isatty():
            snap = take_snapshot(store, hosts, datetime.now(UTC), live_limit=limit)
            click.echo(plain_snapshot(snap, store.url))
            return
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C quits like q
            _live(store, hosts, interval, limit, store.url)
    finally:
        store.close()
