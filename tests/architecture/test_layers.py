"""The import-linter contracts in pyproject.toml hold, and they can fail.

``lint-imports`` runs in scripts/test.sh; running it here as well keeps a plain
``pytest`` honest. The second test copies the package, plants three violations and
checks that each contract names its own: a contract that cannot fail protects nothing
(an unmatched layer name, a container that moved, a typo in a module path would all
make one silently pass).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} missing: install the test extras (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(cwd / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_are_kept() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def _contract_layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers"]
    return [{m.strip() for m in layer.split("|")} for layer in layers["layers"]]


def _readme_layers() -> tuple[list[set[str]], str]:
    """The boxes of the README's layer graph, top to bottom, and the text around it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```mermaid\n(.*?)```", readme, flags=re.DOTALL)
    (graph,) = [b for b in blocks if "import-linter" in b]
    boxes: list[set[str]] = []
    current: set[str] | None = None
    for raw in graph.splitlines():
        line = raw.strip()
        if line.startswith("subgraph "):
            current = set()
        elif line == "end":
            assert current is not None
            boxes.append(current)
            current = None
        elif current is not None and line:
            node = re.fullmatch(r'(\w+)(?:\["([^"]+)"\])?', line)
            assert node, f"not a package node: {line!r}"
            current.add(node.group(2) or node.group(1))
    return boxes, readme


def test_the_readme_draws_the_contracts_layers() -> None:
    boxes, readme = _readme_layers()
    assert boxes == _contract_layers()
    for name in set().union(*boxes):
        assert re.search(rf"^- \*\*`{name}/?`\*\*: ", readme, flags=re.MULTILINE), (
            f"README, 'Packages and layers': no line saying what {name} owns"
        )


def test_every_top_level_module_is_placed_in_a_layer() -> None:
    # exhaustive=true makes lint-imports check this too; the test says it in one line.
    placed = set().union(*_contract_layers())
    package = ROOT / "mqi_communicator"
    present = {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | {
        p.parent.name for p in package.glob("*/__init__.py")
    }
    assert placed == present


def test_each_contract_catches_its_violation(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    pkg = tmp_path / "mqi_communicator"
    shutil.copytree(ROOT / "mqi_communicator", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    # 1. The pure core reaches for the database.
    with (pkg / "statemachine" / "states.py").open("a", encoding="utf-8") as f:
        f.write("\nfrom ..persistence import engine_setup  # planted\n")
    # 2. A new package that no layer names.
    (pkg / "newcomer").mkdir()
    (pkg / "newcomer" / "__init__.py").write_text('"""Placed nowhere."""\n', encoding="utf-8")
    # 3. A cycle between two modules of one package (config.model imports config.log).
    with (pkg / "config" / "log.py").open("a", encoding="utf-8") as f:
        f.write("\nfrom . import model  # planted\n")

    out = _lint(tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "newcomer" in text  # the layers contract refuses to run with a module unplaced

    # With the newcomer placed, the three contracts each report their own violation.
    layers_line = '    "errors | textsafe | treetime | _lazy",\n'
    config = (tmp_path / "pyproject.toml").read_text(encoding="utf-8")
    assert layers_line in config
    config = config.replace(layers_line, layers_line.replace('",', ' | newcomer",'))
    (tmp_path / "pyproject.toml").write_text(config, encoding="utf-8")
    out = _lint(tmp_path)
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1, text
    assert "3 broken" in text, text
    planted = "mqi_communicator.statemachine.states -> mqi_communicator.persistence.engine_setup"
    assert (
        "mqi_communicator.statemachine is not allowed to import mqi_communicator.persistence"
        in text
    )
    assert planted in text
    assert "No cycles are allowed in mqi_communicator.config" in text
