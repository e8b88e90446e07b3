"""Rich rendering of a :class:`~.snapshot.Snapshot` that fits the terminal it is given.

Every row is one line (long text is cut with an ellipsis), and the sections share the
height: hosts and GPUs first (needing attention first: zombies, then offline), then the
cases held back (only when there are any), the cases get the rest and scroll. 80x24 over
SSH is the smallest screen it is designed for. Text from outside (names, errors) goes in
as plain :class:`Text`, never as markup, and arrives escaped from the snapshot.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..display import HeldBack
from ..statemachine import CaseState, GpuState
from .snapshot import CaseRow, GpuRow, HostRow, Snapshot, fmt_elapsed

__all__ = ["STATE_STYLE", "case_window", "render_screen"]

STATE_STYLE: dict[str, str] = {
    CaseState.SUBMITTED: "white",
    CaseState.SUBMITTING: "cyan",
    CaseState.RUNNING: "bold cyan",
    CaseState.RETRIEVING: "cyan",
    CaseState.COMPLETED: "green",
    CaseState.FAILED: "bold red",
    CaseState.CANCELLED: "yellow",
    GpuState.AVAILABLE: "green",
    GpuState.ASSIGNED: "cyan",
    GpuState.ZOMBIE: "bold white on red",
    GpuState.OFFLINE: "black on yellow",
}
#: Lines that are not table rows: title, counts, three table headers, footer.
_FIXED_LINES = 6


def _state(value: str) -> Text:
    shown = value.upper() if value in (GpuState.ZOMBIE, GpuState.OFFLINE) else value
    return Text(shown, style=STATE_STYLE.get(value, ""))


def _table(*columns: tuple[str, dict[str, object]]) -> Table:
    t = Table(
        box=None,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        expand=True,
        header_style="bold reverse",
    )
    for header, opts in columns:
        t.add_column(header, no_wrap=True, overflow="ellipsis", **opts)  # type: ignore[arg-type]
    return t


def _since(moment: datetime, now: datetime) -> str:
    return fmt_elapsed((now - moment).total_seconds())


def _gpu_table(rows: list[GpuRow], hidden: int, now: datetime) -> Table:
    t = _table(
        ("GPU", {"ratio": 2, "min_width": 8}),
        ("STATE", {"width": 9}),
        ("CASE", {"ratio": 3, "min_width": 10}),
        ("FOR", {"width": 6, "justify": "right"}),
        ("NOTE", {"ratio": 2, "min_width": 6}),
    )
    for g in rows:
        case = "-" if g.case_id is None else f"{g.case_id} {g.case_name or ''}".strip()
        if g.quarantined:
            case = f"quarantines {case}"
        note = []
        if g.offline_requested and g.state is not GpuState.OFFLINE:
            note.append("offline requested")
        if g.state is GpuState.ZOMBIE and g.next_check_at is not None:
            note.append(f"re-check in {_since(now, g.next_check_at)}")
        t.add_row(g.name, _state(g.state), Text(case), _since(g.since, now), ", ".join(note))
    if hidden:
        t.add_row(Text(f"+{hidden} more", style="dim"), "", "", "", "")
    return t


def _host_table(rows: list[HostRow], hidden: int) -> Table:
    t = _table(
        ("HOST", {"ratio": 2, "min_width": 8}),
        ("HEALTH", {"width": 8}),
        ("GPUS", {"width": 5, "justify": "right"}),
        ("BUSY", {"width": 5, "justify": "right"}),
        ("ZOMBIE", {"width": 6, "justify": "right"}),
        ("OFF", {"width": 4, "justify": "right"}),
        ("CASES", {"width": 5, "justify": "right"}),
        ("NOTE", {"ratio": 3}),
    )
    styles = {"up": "green", "down": "bold white on red"}
    for h in rows:
        zombies = Text(str(h.zombies), style="bold red" if h.zombies else "")
        t.add_row(
            Text(h.name),
            Text(h.health, style=styles.get(h.health, "dim")),
            str(h.gpus),
            str(h.busy),
            zombies,
            str(h.offline),
            str(h.live_cases),
            Text(h.detail, style="dim"),
        )
    if hidden:
        t.add_row(Text(f"+{hidden} more", style="dim"), *[""] * 7)
    return t


def _case_table(rows: list[CaseRow]) -> Table:
    t = _table(
        ("ID", {"width": 5, "justify": "right"}),
        ("CASE", {"ratio": 3, "min_width": 8}),
        ("STATE", {"width": 10}),
        ("GPU", {"ratio": 2, "min_width": 5}),
        ("ATT", {"width": 3, "justify": "right"}),
        ("ELAPSED", {"width": 7, "justify": "right"}),
        ("PROGRESS", {"width": 9}),
        ("LAST REASON", {"ratio": 4, "min_width": 8}),
    )
    for c in rows:
        t.add_row(
            str(c.id),
            Text(c.name),
            _state(c.state),
            c.gpu or "-",
            str(c.attempt),
            fmt_elapsed(c.elapsed_s),
            c.progress,
            Text(c.reason),
        )
    return t


def _held_table(rows: list[HeldBack], hidden: int, now: datetime) -> Table:
    t = _table(
        ("ID", {"width": 5, "justify": "right"}),
        ("HELD BACK", {"ratio": 2, "min_width": 8}),
        ("TRIES", {"width": 5, "justify": "right"}),
        ("NEXT", {"width": 8}),
        ("WHY", {"ratio": 5, "min_width": 10}),
    )
    for h in rows:
        why = Text(h.why, style="yellow" if h.kind == "wait" else "red")
        t.add_row(str(h.case_id), Text(h.name), str(h.count), h.next_in(now), why)
    if hidden:
        t.add_row("", Text(f"+{hidden} more", style="dim"), "", "", "")
    return t


def case_window(total: int, room: int, scroll: int) -> tuple[int, int]:
    """The first row shown and how many fit, with ``scroll`` clamped to the list."""
    room = max(1, room)
    first = min(max(0, scroll), max(0, total - room))
    return first, min(room, total - first)


def render_screen(
    snap: Snapshot, *, height: int, scroll: int, source: str
) -> tuple[RenderableType, int]:
    """The whole screen for ``height`` lines, and the scroll position actually used."""
    now = snap.taken_at
    host_room = min(len(snap.hosts), 2 if height < 30 else 5)
    host_hidden = len(snap.hosts) - host_room
    gpu_room = min(len(snap.gpus), max(2, (height - _FIXED_LINES) // 3))
    gpu_hidden = len(snap.gpus) - gpu_room
    held_room = min(len(snap.held), 2 if height < 30 else 5)
    held_hidden = len(snap.held) - held_room
    case_room = height - _FIXED_LINES - host_room - gpu_room - (gpu_hidden > 0)
    case_room -= (host_hidden > 0) + (held_room > 0) + held_room + (held_hidden > 0)
    first, shown = case_window(len(snap.cases), case_room, scroll)

    title = Text.assemble(
        ("mqi-communicator top", "bold"),
        f"  {now:%Y-%m-%d %H:%M:%S} UTC  ",
        ("q", "bold"),
        " quit  ",
        ("j/k", "bold"),
        f" scroll  {source}",
        no_wrap=True,
        overflow="ellipsis",
    )
    counts = Text(no_wrap=True, overflow="ellipsis")
    for state in CaseState:
        n = snap.counts.get(state, 0)
        counts.append(f"{state.value} ", style="dim")
        counts.append(f"{n}  ", style=STATE_STYLE[state] if n else "dim")
    total = len(snap.cases)
    live_note = f" (+{snap.live_hidden} live not loaded)" if snap.live_hidden else ""
    footer = Text(
        f"cases {first + 1 if shown else 0}-{first + shown} of {total} shown: live first, "
        f"then the newest ended{live_note}",
        style="dim",
        no_wrap=True,
        overflow="ellipsis",
    )
    parts: list[RenderableType] = [
        title,
        counts,
        _host_table(list(snap.hosts[:host_room]), host_hidden),
        _gpu_table(list(snap.gpus[:gpu_room]), gpu_hidden, now),
        *([_held_table(list(snap.held[:held_room]), held_hidden, now)] if held_room else []),
        _case_table(list(snap.cases[first : first + shown])),
        footer,
    ]
    return Group(*parts), first
