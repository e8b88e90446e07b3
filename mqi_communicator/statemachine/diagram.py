"""Mermaid ``stateDiagram-v2`` text for the case and GPU machines, from the tables.

The README's diagram is generated here from :mod:`.tables`, so it cannot drift from
the machines. Each edge carries its trigger and its guards, in the notation that
``transitions``' own Mermaid engine uses: ``release [termination_proven & !offline_requested]``.

We render the tables directly rather than through ``transitions``' ``GraphMachine``:
that engine emits styling and active-state markup (``classDef``, ``Class``) meant for
a live model, which clutters a static README diagram. The data is the same.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from .states import CaseState, GpuState
from .tables import CASE_TRANSITIONS, GPU_TRANSITIONS, TransitionSpec

__all__ = [
    "MACHINES",
    "case_diagram",
    "edge_label",
    "gpu_diagram",
    "markdown",
    "mermaid",
]

#: The machines by the name the CLI uses: (states, transitions, initial, final states).
MACHINES: dict[str, tuple[tuple[str, ...], tuple[TransitionSpec, ...], str, tuple[str, ...]]] = {
    "case": (
        tuple(s.value for s in CaseState),
        CASE_TRANSITIONS,
        CaseState.SUBMITTED.value,
        (CaseState.COMPLETED.value,),
    ),
    "gpu": (
        tuple(s.value for s in GpuState),
        GPU_TRANSITIONS,
        GpuState.AVAILABLE.value,
        (),
    ),
}

_TITLES = {"case": "Case", "gpu": "GPU"}


def edge_label(spec: TransitionSpec) -> str:
    """The text on one edge: the trigger, then its guards (``!`` marks an ``unless``)."""
    guards = [*spec.conditions, *(f"!{name}" for name in spec.unless)]
    return f"{spec.trigger} [{' & '.join(guards)}]" if guards else spec.trigger


def _render(
    states: Sequence[str],
    specs: Sequence[TransitionSpec],
    initial: str,
    final: Sequence[str],
) -> str:
    lines = ["stateDiagram-v2", "  direction LR", f"  [*] --> {initial}"]
    # Edges grouped by source in state order, so the text reads machine by state.
    for state in states:
        for spec in specs:
            if state in (str(s) for s in spec.source):
                lines.append(f"  {state} --> {spec.dest}: {edge_label(spec)}")
    lines.extend(f"  {state} --> [*]" for state in final)
    return "\n".join(lines) + "\n"


def mermaid(machine: str) -> str:
    """The Mermaid ``stateDiagram-v2`` text of one machine.

    Args:
        machine: ``"case"`` or ``"gpu"``.

    Raises:
        KeyError: for an unknown machine name.
    """
    states, specs, initial, final = MACHINES[machine]
    return _render(states, specs, initial, final)


def case_diagram() -> str:
    """The Mermaid text of the case machine."""
    return mermaid("case")


def gpu_diagram() -> str:
    """The Mermaid text of the GPU machine."""
    return mermaid("gpu")


def markdown() -> str:
    """Both machines as Markdown: a heading and a fenced ``mermaid`` block each.

    This is exactly what the README holds between its diagram markers.
    """
    parts = [
        f"**{_TITLES[name]} machine**\n\n```mermaid\n{mermaid(name)}```\n" for name in MACHINES
    ]
    return "\n".join(parts)
