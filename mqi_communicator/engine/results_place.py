"""Where a case's results land: never onto a folder that is already there.

A case folder ``NAME`` may run more than once (dropped again after its case ended, see
:mod:`mqi_communicator.registration`), so its results go to the first of

1. ``<results_dir>/NAME``
2. ``<results_dir>/NAME.case<id>``
3. ``<results_dir>/NAME.case<id>-2``, ``-3``, ...

that does not exist yet or already holds THIS attempt's results (its
``.mqi-result.json`` stamp names the case id and attempt). Retrieval never replaces,
moves or writes into an existing folder: the results of an earlier case (or attempt),
or a folder someone put there, stay exactly as they are. The choice is made from what
is on disk, so it is the same after a crash: the rename into place is the last step,
and a folder holding our stamp is found again. A name longer than the file system
allows (255 bytes) is shortened before the suffix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STAMP", "candidate_folders", "choose_results_folder", "find_results", "stamp_of"]

STAMP = ".mqi-result.json"
_NAME_MAX = 255
#: More candidates than this means something is badly wrong (a loop creating folders).
_MAX_CANDIDATES = 1000


def stamp_of(folder: Path) -> tuple[int, int] | None:
    """The ``(case_id, attempt)`` a results folder is stamped with, or None."""
    try:
        data = json.loads((folder / STAMP).read_text(encoding="utf-8"))
        return int(data["case_id"]), int(data["attempt"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fit(name: str, suffix: str) -> str:
    """``name + suffix`` cut (at a character boundary) to fit in one path component."""
    room = _NAME_MAX - len(suffix.encode("utf-8", "surrogateescape"))
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= room:
        return name + suffix
    cut = encoded[:room].decode("utf-8", "ignore")
    return cut + suffix


def candidate_folders(results_dir: Path, name: str, case_id: int) -> Iterator[Path]:
    """Where case ``case_id``'s results may go, in order of preference (all of them)."""
    yield results_dir / _fit(name, "")
    yield results_dir / _fit(name, f".case{case_id}")
    for n in range(2, _MAX_CANDIDATES):
        yield results_dir / _fit(name, f".case{case_id}-{n}")


def choose_results_folder(results_dir: Path, name: str, case_id: int, attempt: int) -> Path:
    """The folder this attempt's results go to (or are already in); see the module doc.

    Raises:
        FileExistsError: every candidate is taken (over a thousand folders of one case).
    """
    for path in candidate_folders(results_dir, name, case_id):
        if not (path.exists() or path.is_symlink()) or stamp_of(path) == (case_id, attempt):
            return path
    raise FileExistsError(f"no free results folder for case {case_id} in {results_dir}")


def find_results(results_dir: Path, name: str, case_id: int) -> Path | None:
    """The folder holding case ``case_id``'s results (its latest attempt), if any."""
    found: tuple[int, Path] | None = None
    for path in candidate_folders(results_dir, name, case_id):
        if not (path.exists() or path.is_symlink()):
            if path.name != name:
                break  # the suffixed names are taken in order: none further
            continue
        stamp = stamp_of(path)
        if stamp is not None and stamp[0] == case_id and (found is None or stamp[1] > found[0]):
            found = (stamp[1], path)
    return found[1] if found is not None else None
