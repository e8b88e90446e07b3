"""Remove our own half-made copies that a crash (kill -9, power loss) left behind.

Run once when an engine starts (:func:`remove_leftovers`). Only two kinds of entries
are touched, each recognised by its full name AND its age:

* ``<results_dir>/.mqi-staging/case<id>_a<attempt>.partial-<hex>``: a download that was
  being extracted (``ssh_transfer.download_over_channel``, ``LocalTransport``);
* ``<remote_base>/mqic_case_<id>_a<attempt>.partial-<hex>`` of every ``local``-transport
  host: an upload copy (``LocalTransport._copy_verified``; 1.3 GB in one kill -9 try).

The age is the newest mtime anywhere in the entry (a live copy keeps writing). It
must exceed :func:`leftover_min_age_s`: 10 minutes on an engine that holds the SQLite
lock (then no engine of this database can still be copying: the lock proves the
previous holder dead; the margin covers another database misconfigured onto the same
folders), and ``transfer_timeout_s`` + 10 minutes with several engines (PostgreSQL),
where another engine's transfer may be alive but is over by then. Anything else
(finished staging folders, which the next retrieval resumes; other names; younger
copies) is left alone. What is removed is logged; a removal that fails is logged and
tried again at the next start.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..config import Config
from ..remote.protocol import PARTIAL_UPLOAD_PATTERN
from ..textsafe import printable
from ..treetime import newest_mtime

__all__ = [
    "PARTIAL_STAGING",
    "PARTIAL_UPLOAD",
    "clean_at_start",
    "leftover_min_age_s",
    "remove_leftovers",
]

log = logging.getLogger("mqi_communicator.engine")

PARTIAL_STAGING = re.compile(r"case\d+_a\d+\.partial-[0-9a-f]{8,12}")
PARTIAL_UPLOAD = re.compile(PARTIAL_UPLOAD_PATTERN)
_MARGIN_S = 600.0


def leftover_min_age_s(*, exclusive: bool, transfer_timeout_s: float) -> float:
    """How old a partial copy must be to count as a crash's leftover (module docstring)."""
    return _MARGIN_S if exclusive else transfer_timeout_s + _MARGIN_S


def _sweep(folder: Path, pattern: re.Pattern[str], now: float, min_age_s: float) -> list[Path]:
    removed: list[Path] = []
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it if pattern.fullmatch(e.name))
    except OSError:
        return removed  # no such folder (yet): nothing of ours there
    for name in names:
        path = folder / name
        try:
            newest = newest_mtime(path)
            if newest is None:
                continue  # gone meanwhile
            age = now - newest
            if age < min_age_s:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as err:
            log.warning("leftover %s could not be removed (%s); next start tries again", path, err)
            continue
        log.info("removed leftover %s (untouched for %.0f s)", printable(path), age)
        removed.append(path)
    return removed


def remove_leftovers(
    results_dir: Path,
    local_remote_bases: Iterable[Path],
    *,
    now: float,
    min_age_s: float,
) -> list[Path]:
    """Remove our crash leftovers older than ``min_age_s`` (epoch ``now``); returns them."""
    removed = _sweep(results_dir / ".mqi-staging", PARTIAL_STAGING, now, min_age_s)
    for base in sorted(set(local_remote_bases)):
        removed += _sweep(base, PARTIAL_UPLOAD, now, min_age_s)
    return removed


def clean_at_start(config: Config, *, exclusive: bool, now: float) -> list[Path]:
    """:func:`remove_leftovers` over ``config``'s results folder and local hosts' bases."""
    bases = [Path(h.remote_base) for h in config.hosts.values() if h.transport == "local"]
    min_age = leftover_min_age_s(
        exclusive=exclusive, transfer_timeout_s=config.engine.transfer_timeout_s
    )
    return remove_leftovers(config.results_dir, bases, now=now, min_age_s=min_age)
