"""When a folder tree last changed: the newest mtime anywhere in it.

The one walk behind intake's "has this case folder settled?" (``intake/scan.py``) and the
crash-leftover sweep's "is this partial copy still being written?" (``engine/leftovers.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["newest_mtime"]


def newest_mtime(root: Path, *, not_after: float | None = None) -> float | None:
    """The newest mtime (epoch seconds) of ``root`` and of everything under it.

    Symlinks count by their own mtime and are never followed (``root`` included), so a
    link cannot lead the walk out of the tree. Entries that vanish or cannot be read
    meanwhile are skipped.

    Args:
        not_after: Ignore mtimes later than this (a file server's skewed clock must not
            make a tree look busy forever); None counts every mtime.

    Returns:
        None when ``root`` does not exist; else the newest mtime found (0.0 when every
        one was later than ``not_after``).

    Raises:
        OSError: ``root`` exists but cannot be examined.
    """
    try:
        top = root.lstat()
    except FileNotFoundError:
        return None
    limit = float("inf") if not_after is None else not_after
    newest = top.st_mtime if top.st_mtime <= limit else 0.0
    stack = [root] if root.is_dir() and not root.is_symlink() else []
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                    except OSError:
                        continue
                    if newest < st.st_mtime <= limit:
                        newest = st.st_mtime
        except OSError:
            continue
    return newest
