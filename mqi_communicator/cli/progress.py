"""Live progress for ``run`` and ``demo``: a line per state change, and transfer progress.

:class:`ProgressPrinter` is fed after every engine tick. It reads only what changed: the
cases that are still live (plus those that just left the live set), the GPU list and the
hosts' health rows, and prints each new audit row, each change of why a case is held
back (a new failure, a new wait) and each host health change once. The
cost per tick is bounded by the number of live cases and hosts, not by the size of the
database.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TextIO

import click

from ..console.snapshot import describe_health
from ..display import held_back
from ..engine.runtime import utcnow
from ..persistence import CaseRecord, TransitionRecord
from ..statemachine import TERMINAL_CASE_STATES, CaseState
from ..textsafe import printable

if TYPE_CHECKING:
    from ..service import Communicator

__all__ = ["ProgressPrinter", "human_bytes"]

_LIVE = [s for s in CaseState if s not in TERMINAL_CASE_STATES]
#: Audit rows read per changed entity and update (more than one tick can produce).
_WINDOW = 50
#: Bookkeeping rows (field updates, GPU sync) that are not state changes.
_QUIET_TRIGGERS = frozenset({"note", "add"})


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
        self._versions: dict[int, int] = {}  # live case id -> row version last seen
        self._gpu_versions: dict[str, int] = {}
        #: Per host: (up, failures) last shown; absent: nothing shown yet.
        self._health: dict[str, tuple[bool, int]] = {}
        #: Per live case held back: (what is counted, count, why) last shown.
        self._held: dict[int, tuple[str, int, str]] = {}
        self._hwm = 0  # the highest audit row id already shown
        self._last_done: tuple[str, int] | None = None
        self._tty = self._out.isatty()
        self._bar_open = False

    def _line(self, text: str) -> None:
        if self._bar_open:  # finish the carriage-return line first
            click.echo("", file=self._out)
            self._bar_open = False
        # Lines name cases, whose folder names may hold escape sequences or newlines.
        click.echo(f"[{self._clock() - self._t0:6.1f}s] {printable(text)}", file=self._out)

    def note(self, text: str) -> None:
        """Print a free-form line with the elapsed-time prefix."""
        self._line(text)

    def transfer(self, label: str, done: int, total: int) -> None:
        """The engine's transfer callback: ``progress(label, bytes_done, bytes_total)``."""
        finished = total <= 0 or done >= total
        if finished:
            # Transports report the end twice (sent, then verified): show it once.
            if self._last_done == (label, total):
                return
            self._last_done = (label, total)
        else:
            self._last_done = None
        if self._tty:
            pct = 100 if total <= 0 else int(100 * done / total)
            filled = pct // 5
            bar = "#" * filled + "." * (20 - filled)
            text = f"  transfer {label} [{bar}] {pct:3d}% {human_bytes(done)}/{human_bytes(total)}"
            click.echo(f"\r{printable(text)}", nl=False, file=self._out)
            self._bar_open = not finished
            if finished:
                click.echo("", file=self._out)
        elif finished:
            self._line(f"  transfer {label}: {human_bytes(total)} verified")

    def _describe(self, t: TransitionRecord, names: dict[int, str]) -> str:
        if t.entity == "case":
            who = f"case {t.case_id} ({names.get(t.case_id or 0, '?')})"
        else:
            who = f"gpu {t.gpu_name}"
            if t.case_id is not None:
                who += f" [case {t.case_id}]"
        before = "new" if t.from_state == "-" else t.from_state
        text = f"{who}: {before} -> {t.to_state} ({t.trigger})"
        if t.evidence is not None:
            text += f" evidence={t.evidence.kind.value}"
        if t.detail:
            text += f" -- {t.detail}"
        return text

    def prime(self, comm: Communicator) -> None:
        """Take the current state as already shown (``run`` on a busy database)."""
        self._versions = {c.id: c.version for c in comm.cases(_LIVE)}
        self._gpu_versions = {g.name: g.version for g in comm.gpus()}
        latest = comm.history(limit=1)
        self._hwm = latest[-1].id if latest else 0

    def update(self, comm: Communicator) -> None:
        """Print every case and GPU move since the last call, in order (call after a tick).

        Only entities whose row version changed are read, so the cost follows the work
        in flight, not the size of the database.
        """
        live = {c.id: c for c in comm.cases(_LIVE)}
        changed = [cid for cid, c in live.items() if self._versions.get(cid) != c.version]
        left = [cid for cid in self._versions if cid not in live]
        names = {cid: c.name for cid, c in live.items()}
        rows: dict[int, TransitionRecord] = {}
        for cid in {*changed, *left}:
            if cid not in names:
                names[cid] = comm.case(cid).name
            rows.update((t.id, t) for t in comm.history(case_id=cid, limit=_WINDOW))
        gpus = comm.gpus()
        for g in gpus:
            if self._gpu_versions.get(g.name) != g.version:
                rows.update((t.id, t) for t in comm.history(gpu_name=g.name, limit=_WINDOW))
        for tid in sorted(rows):
            t = rows[tid]
            if tid <= self._hwm or t.trigger in _QUIET_TRIGGERS:
                continue
            self._line(self._describe(t, names))
            if self._on_move is not None:
                self._on_move(t)
        self._hwm = max([self._hwm, *rows])
        for line in comm.intake_notices():
            self._line(line)
        self._versions = {cid: c.version for cid, c in live.items()}
        self._gpu_versions = {g.name: g.version for g in gpus}
        self._show_held(live.values())
        self._show_health(comm)

    def _show_held(self, live: Iterable[CaseRecord]) -> None:
        """A line when a live case is held back anew or again (a new count or reason),
        and when it goes on; nothing while it merely waits for its next attempt.

        Read from the live cases already loaded: no query of its own. Held-back cases
        at start are shown too (``prime`` leaves them unseen): the operator should know.
        """
        now = utcnow()
        held = {}
        for case in live:
            h = held_back(case, now)
            if h is None:
                if case.id in self._held:
                    self._line(f"case {case.id} ({case.name}): no longer held back")
                continue
            held[case.id] = seen = (h.kind, h.count, h.why)
            if self._held.get(case.id) != seen:
                self._line(f"case {h.case_id} ({h.name}): held back: {h.line(now)}")
        self._held = held

    def _show_health(self, comm: Communicator) -> None:
        """A line when a host goes down, fails again (new retry time), or is back up.

        Read from the database, as every view does: what the engine recorded.
        """
        now = utcnow()
        for host, rec in comm.host_health().items():
            seen = (rec.up, rec.failures)
            before = self._health.get(host)
            self._health[host] = seen
            if before == seen or (before is None and rec.up):
                continue  # unchanged, or up from the start: nothing to say
            _, detail = describe_health(rec, now)
            self._line(f"host {host}: {detail}" if not rec.up else f"host {host}: up again")
