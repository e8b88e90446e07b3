#!/usr/bin/env python3
"""Mutation check: plant each safety mutant of ``scripts/mutants.toml`` and run its tests.

Every mutant is one edit of the real code (a guard, a decision, an adapter, the markers,
the store) that breaks the promise "a GPU is never handed on while our job may run".
The script copies the working tree (tracked and untracked, not ignored files) to a
temporary directory ONCE, checks that the unmutated copy passes every listed test, and
then, one mutant at a time, edits the copy, runs that mutant's tests with ``pytest -x``
and restores the file. The working tree is never touched.

    .venv/bin/python scripts/mutation.py             # all mutants
    .venv/bin/python scripts/mutation.py -k pueue    # ids containing "pueue"
    .venv/bin/python scripts/mutation.py --check     # anchors only (seconds)

Exit status: 0 when every mutant was killed; 1 when one survived, an ``original`` text is
not found exactly once (the list must not rot silently), or the unmutated copy fails.
Tests needing sshd/Slurm/PostgreSQL run as they do in the suite (``CI=true`` makes a
missing service fail instead of skip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = Path(__file__).with_name("mutants.toml")


@dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``original`` (found exactly once) in ``file``."""

    id: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    why: str
    rewritten_by: str = ""


def load_mutants(path: Path = MUTANTS) -> list[Mutant]:
    """Read the list; raises ValueError on a malformed entry or a duplicate id."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out: list[Mutant] = []
    for raw in data.get("mutant", []):
        try:
            m = Mutant(
                id=str(raw["id"]),
                file=str(raw["file"]),
                original=str(raw["original"]),
                replacement=str(raw["replacement"]),
                tests=tuple(str(t) for t in raw["tests"]),
                why=str(raw["why"]),
                rewritten_by=str(raw.get("rewritten_by", "")),
            )
        except KeyError as err:
            raise ValueError(f"mutant {raw.get('id', '?')}: missing field {err}") from err
        if m.original == m.replacement or not m.tests:
            raise ValueError(f"mutant {m.id}: no change, or no tests")
        out.append(m)
    ids = [m.id for m in out]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate mutant ids in {path}")
    return out


def anchor_problems(root: Path, mutants: list[Mutant]) -> list[str]:
    """Mutants whose ``original`` is not found exactly once, or whose tests do not exist."""
    problems = []
    for m in mutants:
        path = root / m.file
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        count = text.count(m.original)
        if count != 1:
            problems.append(f"{m.id}: original found {count} times in {m.file}")
        for target in m.tests:
            if not (root / target.split("::", 1)[0]).exists():
                problems.append(f"{m.id}: no test target {target}")
    return problems


def _copy_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy, not the editable install of the working tree, must be imported.
    env["PYTHONPATH"] = str(copy) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MQI_HYPOTHESIS_PROFILE", "mutation")  # ci, without shrinking
    return env


def _pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, str]:
    """Run ``tests`` in ``copy``: ("passed" | "failed" | "timeout", the last output line)."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", *tests]
    try:
        done = subprocess.run(
            argv, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", f"no result within {timeout:.0f} s"
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    summary = (failed or lines or [done.stderr.strip()[-300:]])[-1]
    return ("passed" if done.returncode == 0 else "failed"), summary


def _imports_copy(copy: Path) -> bool:
    probe = [sys.executable, "-c", "import mqi_communicator as m; print(m.__file__)"]
    out = subprocess.run(probe, cwd=copy, env=_env(copy), capture_output=True, text=True)
    return out.stdout.strip().startswith(str(copy))


def run(mutants: list[Mutant], timeout: float) -> int:
    """Baseline, then every mutant; prints a table and returns the exit status."""
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mqi-mutation-") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        if not _imports_copy(copy):
            print("the copy's package is not the one imported (check PYTHONPATH)")
            return 1
        targets = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        t0 = time.perf_counter()
        status, summary = _pytest(copy, targets, timeout * 3)
        print(
            f"baseline ({len(targets)} targets): {status} in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        if status != "passed":
            print(f"  the unmutated tree fails its own tests: {summary}")
            return 1
        survivors = []
        for m in mutants:
            path = copy / m.file
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace(m.original, m.replacement, 1), encoding="utf-8")
            t0 = time.perf_counter()
            try:
                status, summary = _pytest(copy, m.tests, timeout)
            finally:
                path.write_text(text, encoding="utf-8")
            verdict = "SURVIVED" if status == "passed" else "killed"
            if status == "timeout":
                verdict = "killed (timeout)"
            if status == "passed":
                survivors.append(m.id)
            print(f"{verdict:17} {time.perf_counter() - t0:6.1f} s  {m.id}: {summary}", flush=True)
    total = len(mutants)
    print(
        f"score: {total - len(survivors)}/{total} killed in "
        f"{time.perf_counter() - t_all:.0f} s; survivors: {survivors or 'none'}"
    )
    return 1 if survivors else 0


def main() -> int:
    """Parse the command line and run the check (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-k", default="", help="only mutants whose id contains this")
    parser.add_argument("--check", action="store_true", help="only check the anchors")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    args = parser.parse_args()
    mutants = [m for m in load_mutants() if args.k in m.id]
    problems = anchor_problems(ROOT, mutants)
    for problem in problems:
        print(f"ANCHOR: {problem}")
    if args.list:
        for m in mutants:
            rewritten = f" [rewritten by {m.rewritten_by}]" if m.rewritten_by else ""
            print(f"{m.id}: {m.file}: {m.why}{rewritten}")
    if problems or args.check or args.list:
        return 1 if problems else 0
    return run(mutants, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
