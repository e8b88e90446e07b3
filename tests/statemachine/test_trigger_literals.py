"""Triggers are typed: no trigger name is written as a string outside a few homes.

The enum (``statemachine/triggers.py``) defines them; the database layer stores their
text (``persistence/``, ``migrations/``); the CLI and the web console name operator
commands that happen to share a trigger's word (``cases retry``, ``gpus release``).
Everywhere else a string equal to a trigger's value is a typo waiting to happen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mqi_communicator
from mqi_communicator.statemachine import CaseTrigger, GpuTrigger

PACKAGE = Path(mqi_communicator.__file__).parent
TRIGGER_WORDS = {t.value for t in CaseTrigger} | {t.value for t in GpuTrigger}
ALLOWED = (
    "statemachine/triggers.py",
    "persistence/",
    "migrations/",
    "cli/",
    "web/actions.py",  # the console's operator commands, as the CLI's
)


def _exported_names(tree: ast.Module) -> set[int]:
    """ids of the string nodes inside ``__all__ = [...]`` (function names, not triggers)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            out.update(id(n) for n in ast.walk(node.value))
    return out


def trigger_literals(root: Path) -> list[str]:
    """``file:line: 'word'`` for each string constant equal to a trigger, outside ALLOWED."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(ALLOWED):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _exported_names(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in TRIGGER_WORDS
                and id(node) not in skip
            ):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_no_trigger_is_spelled_as_a_string_outside_its_homes() -> None:
    assert trigger_literals(PACKAGE) == []


def test_the_scan_finds_a_planted_literal(tmp_path: Path) -> None:
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "step.py").write_text('x = ("release", "fine")\n')
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "cases.py").write_text('name = "retry"\n')
    assert trigger_literals(tmp_path) == ["engine/step.py:1: 'release'"]
