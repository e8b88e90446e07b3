"""Tell a folder dropped again from the one that already ran: a fingerprint of its content.

A case folder whose case ended may be dropped again under the same name with new
content (a corrected plan, a new patient under a reused name); the same folder left in
place must not run again at every scan. The fingerprint is the sha256 of every entry's
relative path, kind, size and mtime (nanoseconds), recorded at registration
(``cases.fingerprint``). Directory mtimes are left out: an entry added or removed shows
in the names, and a viewer that creates and deletes a temp file must not make a new case.

A copy that keeps names, sizes and mtimes (``cp -p``/robocopy of the very same files)
is the same content and is not run again; touch a file, or `cases retry`, to run it.
Cases registered before fingerprints existed have none: their folder counts as new when
something under it changed after the case was registered (a mtime later than
``created_at``), the same rule the fingerprint applies from then on.
"""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import datetime
from pathlib import Path

from .scan import latest_change

__all__ = ["content_changed", "fingerprint"]


def fingerprint(directory: Path) -> str:
    """The hex sha256 of ``directory``'s entries (path, kind, size, mtime); never follows links.

    Entries that cannot be read count as ``?`` (an unreadable folder still has a stable
    fingerprint, and becoming readable changes it).
    """
    lines: list[str] = []
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError:
            lines.append(f"?\0{_rel(Path(current), directory)}")
            continue
        for entry in entries:
            rel = _rel(Path(entry.path), directory)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                lines.append(f"?\0{rel}")
                continue
            if stat.S_ISDIR(st.st_mode):
                lines.append(f"d\0{rel}")
                stack.append(Path(entry.path))
            else:
                kind = "f" if stat.S_ISREG(st.st_mode) else "o"
                lines.append(f"{kind}\0{rel}\0{st.st_size}\0{st.st_mtime_ns}")
    digest = hashlib.sha256()
    for line in sorted(lines):
        # Undecodable names arrive as surrogates: hash their original bytes.
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def content_changed(
    directory: Path,
    *,
    recorded: str | None,
    registered_at: datetime,
    now: datetime,
) -> bool:
    """True when ``directory`` no longer holds the content its ended case was registered with.

    Args:
        directory: The case folder.
        recorded: The case's fingerprint (None: registered before fingerprints existed).
        registered_at: The case's ``created_at`` (used only without a fingerprint).
        now: The current time (mtimes in the future are ignored, see ``latest_change``).
    """
    if recorded is not None:
        return fingerprint(directory) != recorded
    newest = latest_change(directory, now.timestamp())
    return newest is not None and newest > registered_at.timestamp()


def _rel(path: Path, root: Path) -> str:
    return "." if path == root else path.relative_to(root).as_posix()
