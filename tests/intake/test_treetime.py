"""The one newest-mtime walk (treetime) that intake and the leftover sweep share."""

from __future__ import annotations

import os
from pathlib import Path

from mqi_communicator.engine.leftovers import remove_leftovers
from mqi_communicator.intake.scan import latest_change
from mqi_communicator.treetime import newest_mtime


def _at(path: Path, when: float) -> Path:
    os.utime(path, (when, when), follow_symlinks=False)
    return path


def test_newest_counts_deep_entries_skips_the_future_and_never_follows_links(
    tmp_path: Path,
) -> None:
    now = 1_000_000.0
    root = tmp_path / "case"
    (root / "ct" / "deep").mkdir(parents=True)
    (root / "ct" / "deep" / "slice.dcm").write_bytes(b"x")
    _at(root / "ct" / "deep" / "slice.dcm", now)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "new.dcm").write_bytes(b"y")
    _at(outside / "new.dcm", now + 500)
    (root / "link").symlink_to(outside)
    _at(root / "link", now - 50)
    for d in (root / "ct" / "deep", root / "ct", root):
        _at(d, now - 100)
    assert newest_mtime(root) == now  # the deep file; not the link's target
    _at(root / "ct" / "deep" / "slice.dcm", now + 60)  # a skewed clock
    assert newest_mtime(root, not_after=now) == now - 50  # the link itself counts
    assert newest_mtime(root) == now + 60
    assert latest_change(root, now) == now - 50
    assert newest_mtime(tmp_path / "missing") is None
    assert latest_change(tmp_path / "missing", now) is None


def test_the_leftover_sweep_keeps_a_partial_whose_deep_file_is_young(tmp_path: Path) -> None:
    base = tmp_path / "remote"
    partial = base / "mqic_case_3_a1.partial-0a1b2c3d"
    (partial / "ct" / "deep").mkdir(parents=True)
    (partial / "ct" / "deep" / "slice.dcm").write_bytes(b"x")
    now = 2_000_000.0
    for p in (partial / "ct" / "deep", partial / "ct", partial):
        _at(p, now - 3600)
    _at(partial / "ct" / "deep" / "slice.dcm", now - 10)
    assert remove_leftovers(tmp_path / "results", [base], now=now, min_age_s=600) == []
    assert partial.is_dir()
    _at(partial / "ct" / "deep" / "slice.dcm", now - 3600)
    assert remove_leftovers(tmp_path / "results", [base], now=now, min_age_s=600) == [partial]
