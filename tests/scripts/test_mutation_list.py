"""The mutation check's list stays usable: well-formed, and every anchor still in the code.

``scripts/mutation.py`` itself is too slow for every run (it runs the tests once per
mutant); this only makes sure a refactoring cannot silently detach a mutant from the
code it was written against.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _mutation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mqi_mutation", ROOT / "scripts" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def test_every_mutant_is_anchored_in_the_code() -> None:
    mutation = _mutation()
    mutants = mutation.load_mutants()
    assert len(mutants) >= 20
    assert mutation.anchor_problems(ROOT, mutants) == []
    kinds = {m.file.split("/")[1] for m in mutants}  # statemachine, remote, persistence...
    assert {"statemachine", "remote", "persistence", "engine"} <= kinds


def test_a_lost_anchor_is_reported(tmp_path: Path) -> None:
    mutation = _mutation()
    m = mutation.load_mutants()[0]
    (tmp_path / m.file).parent.mkdir(parents=True)
    (tmp_path / m.file).write_text("nothing of the original here\n", encoding="utf-8")
    problems = mutation.anchor_problems(tmp_path, [m])
    assert any("found 0 times" in p for p in problems), problems
