"""Live progress for ``run`` and ``demo``: a line per state change, and transfer progress.

:class:`ProgressPrinter` is fed after every engine tick. It reads only what changed: the
cases that are still live (plus those that just left the live set) and the GPU list,
and prints each new audit row once. The cost per tick is bounded by the number of live
cases, not by the size of the database.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import click

from ..persistence import TransitionRecord
from ..statemachine import TERMINAL_CASE_STATES, CaseState

if TYPE_CHECKING:
    from ..service import Communicator

__all__ = ["ProgressPrinter", "human_bytes"]

_LIVE = [s for s in CaseState if s not in TERMINAL_CASE_STATES]


def human_bytes(n: float) -> str:
    """``1.2 MB`` style sizes (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class ProgressPrinter:
    """Prints case and GPU moves as they happen, and a transfer progress line.

    Args:
        out: Where to write (stdout by default).
        clock: Monotonic seconds, for the elapsed-time prefix.
        on_move: Also called with every new audit row (the demo collects them).
    """

    def __init__(
        self,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_move: Callable[[TransitionRecord], None] | None = None,
    ) -> None:
        self._out = out if out is not None else sys.stdout
        self._clock = clock
        self._t0 = clock()
        self._on_move = on_move
        self._versions: dict[int, int] = {}
        self._seen: dict[int, int] = {}  # case id -> last audit row id printed
        self._gpu_states: dict[str, str] = {}
        self._tty = self._out.isatty()
        self._bar_open = False

    def _line(self, text: str) -> None:
        if self._bar_open:  # finish the carriage-return line first
            click.echo("", file=self._out)
            self._bar_open = False
        click.echo(f"[{self._clock() - self._t0:6.1f}s] {text}", file=self._out)

    def note(self, text: str) -> None:
        """Print a free-form line with the elapsed-time prefix."""
        self._line(text)

    def transfer(self, label: str, done: int, total: int) -> None:
        """The engine's transfer callback: ``progress(label, bytes_done, bytes_total)``."""
        finished = total <= 0 or done >= total
        if self._tty:
            pct = 100 if total <= 0 else int(100 * done / total)
            filled = pct // 5
            bar = "#" * filled + "." * (20 - filled)
            text = f"  transfer {label} [{bar}] {pct:3d}% {human_bytes(done)}/{human_bytes(total)}"
            click.echo(f"\r{text}", nl=False, file=self._out)
            self._bar_open = not finished
            if finished:
                click.echo("", file=self._out)
        elif finished:
            self._line(f"  transfer {label}: {human_bytes(total)} verified")

    def _describe(self, t: TransitionRecord, name: str) -> str:
        who = f"case {t.case_id} ({name})" if t.entity == "case" else f"gpu {t.gpu_name}"
        text = f"{who}: {t.from_state} -> {t.to_state} ({t.trigger})"
        if t.evidence is not None:
            text += f" evidence={t.evidence.kind.value}"
        if t.detail:
            text += f" -- {t.detail}"
        return text

    def prime(self, comm: Communicator) -> None:
        """Take the current state as already shown (``run`` on a busy database)."""
        for c in comm.cases(_LIVE):
            self._versions[c.id] = c.version
            rows = comm.history(case_id=c.id)
            self._seen[c.id] = rows[-1].id if rows else 0
        self._gpu_states = {g.name: g.status.value for g in comm.gpus()}

    def update(self, comm: Communicator) -> None:
        """Print every move since the last call (call after each tick)."""
        live = {c.id: c for c in comm.cases(_LIVE)}
        changed = [cid for cid, c in live.items() if self._versions.get(cid) != c.version]
        left = [cid for cid in self._versions if cid not in live]
        for cid in sorted({*changed, *left}):
            name = live[cid].name if cid in live else comm.case(cid).name
            last = self._seen.get(cid, 0)
            for t in comm.history(case_id=cid):
                # GPU rows are printed from the GPU diff below; "note" rows are bookkeeping.
                if t.id <= last or t.entity != "case" or t.trigger == "note":
                    continue
                self._line(self._describe(t, name))
                if self._on_move is not None:
                    self._on_move(t)
                self._seen[cid] = t.id
        for cid in left:
            self._versions.pop(cid, None)
            self._seen.pop(cid, None)
        self._versions.update({cid: c.version for cid, c in live.items()})
        for g in comm.gpus():
            before = self._gpu_states.get(g.name)
            if before is not None and before != g.status.value:
                holder = f" (case {g.case_id})" if g.case_id is not None else ""
                self._line(f"gpu {g.name}: {before} -> {g.status.value}{holder}")
            self._gpu_states[g.name] = g.status.value
