"""What counts as a case directory, when it is settled, and whether it can be sent.

Pure or read-only helpers; time is always passed in.

Ignored top-level entries (never cases):

* hidden names: a leading ``.`` (``.git``, ``.DS_Store``, our own ``.mqi-*``);
* editor/OS temporaries: a leading ``~`` (Office lock files ``~$...``), a trailing
  ``~``, and the suffixes ``.tmp``, ``.temp``, ``.part``, ``.partial``, ``.crdownload``,
  ``.swp`` (case-insensitive) -- copy tools write under such a name and rename at the end,
  so the final name appears as a new directory that then settles normally;
* Windows share housekeeping: ``$RECYCLE.BIN``, ``System Volume Information``, and
  ``lost+found``;
* anything that is not a directory (top-level files are not cases).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ..remote.transfer.tarstream import is_excluded
from ..treetime import newest_mtime

__all__ = [
    "TEMP_SUFFIXES",
    "case_problem",
    "classify_entries",
    "is_ignored_name",
    "is_settled",
    "latest_change",
    "list_candidates",
    "refusal_reason",
]

TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp")
_SYSTEM_NAMES = frozenset({"$recycle.bin", "system volume information", "lost+found"})


def is_ignored_name(name: str) -> bool:
    """True for hidden, temporary and system names (see the module docstring)."""
    lower = name.lower()
    return (
        not name
        or name.startswith((".", "~"))
        or name.endswith("~")
        or lower.endswith(TEMP_SUFFIXES)
        or lower in _SYSTEM_NAMES
    )


def is_settled(*, last_change: float, now: float, quiescence_s: float) -> bool:
    """True once ``quiescence_s`` seconds passed since the last change (epoch seconds)."""
    return now - last_change >= quiescence_s


def list_candidates(watch_dir: Path) -> list[Path]:
    """The top-level directories of ``watch_dir`` that may be cases, in name order.

    Returns an empty list when ``watch_dir`` cannot be listed (the caller logs it).
    """
    return classify_entries(watch_dir)[0]


def classify_entries(watch_dir: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The candidate case folders of ``watch_dir`` and the refused entries with the reason.

    Refused: a file, a symlink, a FIFO or other special file, a folder whose name is
    not valid UTF-8 or is ignored (hidden, temporary). Files with an ignored name
    (``.DS_Store``, Office's ``~$`` locks) and the system folders are skipped silently.
    Both lists are in name order; empty when ``watch_dir`` cannot be listed.
    """
    out: list[Path] = []
    refused: list[tuple[Path, str]] = []
    try:
        with os.scandir(watch_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return [], []
    for entry in entries:
        path = watch_dir / entry.name
        try:
            reason = refusal_reason(entry.name, entry.stat(follow_symlinks=False).st_mode)
        except OSError:
            continue
        if reason is None:
            out.append(path)
        elif reason:
            refused.append((path, reason))
    return out, refused


def refusal_reason(name: str, mode: int) -> str | None:
    """Why a top-level entry is not a case (``""``: skip silently), or None for a candidate."""
    is_dir = stat.S_ISDIR(mode)
    if is_ignored_name(name):
        if not is_dir or name.lower() in _SYSTEM_NAMES:
            return ""
        return "ignored name (hidden or temporary: a copy in progress is renamed at its end)"
    if stat.S_ISLNK(mode):
        return "a symbolic link: a case must be a real folder (links are not followed)"
    if stat.S_ISREG(mode):
        return "a file, not a folder: a case is a folder"
    if not is_dir:
        return "a FIFO, socket or device, not a folder: a case is a folder"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8 (undecodable bytes): rename the folder"
    return None


def latest_change(directory: Path, now: float) -> float | None:
    """The newest mtime (epoch seconds) of ``directory`` and everything under it.

    Mtimes later than ``now`` are ignored: a file server with a skewed clock must not
    hold a case back forever; file-system events still cover such writes.

    Returns:
        None if ``directory`` no longer exists; otherwise the newest mtime found
        (0.0 if none could be read).
    """
    try:
        return newest_mtime(directory, not_after=now)
    except OSError:
        return 0.0


def case_problem(directory: Path, exclude: Sequence[str] = ()) -> str | None:
    """Why ``directory`` cannot be a case (empty, unreadable), or None if it can.

    Every file is opened for reading once, so a file we cannot read is found here
    rather than halfway through an upload. Symlinks are followed as the upload would:
    a dangling one is unreadable. ``exclude`` (relative paths the upload never sends,
    the same rule as ``tarstream.enumerate_tree``) is not looked at.
    """
    files = 0
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError as err:
            return f"unreadable: cannot list {_rel(current, directory)}: {err.strerror or err}"
        for entry in entries:
            path = Path(entry.path)
            if exclude and is_excluded(path.relative_to(directory).as_posix(), exclude):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                    continue
                if not stat.S_ISREG(path.stat().st_mode):
                    # A FIFO would block the open below; the upload cannot send it anyway.
                    return f"unreadable: {_rel(path, directory)} is not a regular file"
                with path.open("rb"):
                    files += 1
            except OSError as err:
                return f"unreadable: cannot read {_rel(path, directory)}: {err.strerror or err}"
    if files == 0:
        return "empty: the case directory holds no files"
    return None


def _rel(path: Path, root: Path) -> str:
    if path == root:
        return "the case directory"
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
