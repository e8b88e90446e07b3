"""The Mermaid diagram is generated from the transition tables and matches the README."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from mqi_communicator.statemachine import CASE_TRANSITIONS, GPU_TRANSITIONS, CaseState, GpuState
from mqi_communicator.statemachine.diagram import edge_dest, edge_label, markdown, mermaid

Cli = Callable[..., Result]
README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- diagram:start -->", "<!-- diagram:end -->"


def _edges(text: str) -> set[tuple[str, str, str]]:
    found = set()
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(\w+) --> (\w+): (.+)", line)
        if m:
            found.add((m.group(1), m.group(2), m.group(3)))
    return found


def test_every_table_row_is_an_edge_with_its_guards() -> None:
    for name, table in (("case", CASE_TRANSITIONS), ("gpu", GPU_TRANSITIONS)):
        text = mermaid(name)
        assert text.startswith("stateDiagram-v2\n")
        expected = {
            (str(src), edge_dest(spec, str(src)), edge_label(spec))
            for spec in table
            for src in spec.source
        }
        assert _edges(text) == expected


def test_guard_names_are_on_the_edges() -> None:
    text = mermaid("gpu")
    assert "assigned --> available: release [termination_proven & !offline_requested]" in text
    assert "zombie --> offline: recover [termination_proven & offline_requested]" in text
    assert "quarantine [" not in text  # no guard, no brackets


def test_every_state_appears() -> None:
    for name, states in (("case", CaseState), ("gpu", GpuState)):
        text = mermaid(name)
        for state in states:
            assert re.search(rf"\b{state.value}\b", text), state


def test_readme_diagram_is_the_generated_one() -> None:
    block = markdown()
    if not README.exists():
        pytest.skip(f"README.md absent; paste between {START} / {END}:\n{block}")
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        pytest.skip(f"README.md has no {START} / {END} markers; paste between them:\n{block}")
    inside = text.split(START, 1)[1].split(END, 1)[0]
    assert inside.strip() == block.strip(), (
        "README diagram is stale; run `mqi-communicator diagram` and paste its output "
        f"between the markers:\n{block}"
    )


def test_diagram_command_prints_every_trigger(cli: Cli) -> None:
    result = cli("diagram")
    assert result.exit_code == 0
    assert result.stdout == markdown()
    for spec in (*CASE_TRANSITIONS, *GPU_TRANSITIONS):
        assert f": {spec.trigger}" in result.stdout, spec.trigger
    assert result.stdout.count("```mermaid") == 2
    gpu = cli("diagram", "--machine", "gpu")
    assert gpu.stdout == mermaid("gpu")
    assert "claim" not in gpu.stdout
