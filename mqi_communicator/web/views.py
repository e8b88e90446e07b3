"""What each page shows, built from the library's reads (pure shaping, no HTTP here)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..display import HeldBack, held_back
from ..errors import MqiError
from ..persistence import CaseRecord, GpuRecord, TransitionRecord
from ..persistence.case_faults import held_back_cases
from ..persistence.host_health import HostHealthRecord
from ..service import Communicator
from ..statemachine import CaseState, GpuState

__all__ = [
    "PAGE_SIZE",
    "AttemptRow",
    "CasesPage",
    "HostRow",
    "LogView",
    "Overview",
    "ResultFile",
    "attempts",
    "cases_page",
    "job_log",
    "overview",
    "result_files",
]

PAGE_SIZE = 50
_LATEST = 15
#: A results folder with more entries than this is listed only in part (and says so).
_MAX_FILES = 200
#: Lines of the job log the case page shows.
LOG_LINES = 100


@dataclass(frozen=True)
class HostRow:
    """A configured host with its GPUs' states; ``health`` None while no engine recorded it."""

    name: str
    transport: str
    scheduler: str
    gpus: int
    busy: int
    zombies: int
    offline: int
    health: HostHealthRecord | None


@dataclass(frozen=True)
class Overview:
    """The overview page."""

    case_counts: dict[CaseState, int]
    gpus: list[GpuRecord]
    hosts: list[HostRow]
    latest: list[TransitionRecord]
    #: Live cases the engine holds back (backing off, failing, waiting), oldest first.
    held: list[HeldBack]
    now: datetime


def overview(comm: Communicator) -> Overview:
    """Counts per case state, every GPU, the hosts with their health, the cases held back,
    the latest transitions."""
    gpus = comm.gpus()
    health = comm.host_health()
    hosts = []
    for name, host in comm.config.hosts.items():
        mine = [g for g in gpus if g.host == name]
        hosts.append(
            HostRow(
                name=name,
                transport=host.transport,
                scheduler=host.scheduler.kind,
                gpus=len(mine),
                busy=sum(g.status is GpuState.ASSIGNED for g in mine),
                zombies=sum(g.status is GpuState.ZOMBIE for g in mine),
                offline=sum(g.status is GpuState.OFFLINE for g in mine),
                health=health.get(name),
            )
        )
    latest = comm.history(limit=_LATEST)
    latest.reverse()  # newest first on the page
    now = comm.reconciler.clock()
    with comm.store.reading() as s:
        records = held_back_cases(s, now)
    held = [h for c in records if (h := held_back(c, now)) is not None]
    return Overview(comm.store.count_by_status(), gpus, hosts, latest, held, now)


@dataclass(frozen=True)
class CasesPage:
    """One page of the case list; ``older`` is the keyset cursor of the next page."""

    cases: list[CaseRecord]
    state: CaseState | None
    search: str
    before: int | None
    older: int | None
    matching: int | None


def cases_page(
    comm: Communicator, state: CaseState | None, search: str, before: int | None
) -> CasesPage:
    """The page of cases below id ``before`` (newest first), filtered.

    ``matching`` is the number of cases in ``state`` (from the status index); with a
    search it is None, since counting a substring match means reading every path.
    """
    rows = comm.store.page_cases(state=state, search=search, before_id=before, limit=PAGE_SIZE + 1)
    older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    matching: int | None = None
    if not search:
        counts = comm.store.count_by_status()
        matching = counts[state] if state is not None else sum(counts.values())
    return CasesPage(rows[:PAGE_SIZE], state, search, before, older, matching)


@dataclass(frozen=True)
class AttemptRow:
    """One attempt of a case as its audit rows tell it."""

    attempt: int
    label: str | None
    gpus: list[str]
    first: datetime
    last: datetime
    outcome: str


def attempts(history: Sequence[TransitionRecord]) -> list[AttemptRow]:
    """The case's attempts, in order, from its audit rows (case rows only)."""
    grouped: dict[int, list[TransitionRecord]] = {}
    for t in history:
        if t.entity == "case" and t.attempt is not None:
            grouped.setdefault(t.attempt, []).append(t)
    out = []
    for n, rows in sorted(grouped.items()):
        gpus = sorted({t.gpu_name for t in rows if t.gpu_name})
        label = next((t.label for t in reversed(rows) if t.label), None)
        out.append(AttemptRow(n, label, gpus, rows[0].at, rows[-1].at, rows[-1].to_state))
    return out


@dataclass(frozen=True)
class ResultFile:
    """A file in the case's local results folder (path relative to that folder)."""

    path: str
    size: int


def result_files(
    results_dir: Path, case_name: str, case_id: int | None = None
) -> tuple[list[ResultFile], bool] | None:
    """The files of the case's results folder (at most 200) and whether more exist.

    The folder is the one stamped with ``case_id`` (``NAME`` or ``NAME.case<id>``, see
    ``engine/results_place.py``); without an id, ``results_dir/case_name``. None when
    there is none. Symbolic links are listed, never followed.
    """
    if case_name in ("", ".", "..") or "/" in case_name or "\\" in case_name:
        return None
    root = results_dir / case_name
    if case_id is not None:
        from ..engine.results_place import find_results

        stamped = find_results(results_dir, case_name, case_id)
        if stamped is None:
            return None
        root = stamped
    if not root.is_dir():
        return None
    found: list[ResultFile] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = Path(folder) / name
            try:
                size = full.lstat().st_size
            except OSError:
                size = -1  # vanished or unreadable: still listed, size unknown
            found.append(ResultFile(full.relative_to(root).as_posix(), size))
            if len(found) > _MAX_FILES:
                return found[:_MAX_FILES], True
    return found, False


@dataclass(frozen=True)
class LogView:
    """The job log's tail as the case page shows it: its text, or why there is none."""

    text: str | None
    note: str


def job_log(comm: Communicator, case: CaseRecord, lines: int = LOG_LINES) -> LogView:
    """The last ``lines`` lines of the case's job log, read over its host's transport.

    Any failure to read it (host unreachable, host no longer configured) is shown as
    the note: the page is a view, and the log is never worth an error page.
    """
    if case.remote_dir is None:
        return LogView(None, f"no job log yet: the case is {case.status.value}, not started")
    try:
        chunk = comm.job_log_tail(case.id, lines=lines)
    except MqiError as err:
        return LogView(None, f"log not available: {err}")
    if not chunk.exists:
        return LogView(None, f"no job log in {case.remote_dir} (not started yet, or removed)")
    shown = "the whole log" if chunk.start == 0 else f"the last {lines} lines"
    return LogView(chunk.text, f"{shown} ({chunk.size} bytes) of {case.remote_dir}")
