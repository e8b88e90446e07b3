"""Mermaid ``stateDiagram-v2`` text for the case and GPU machines, from the tables.

The README's diagram is generated here from :mod:`.tables`, so it cannot drift from
the machines. Each edge carries its trigger and its guards, in the notation that
``transitions``' own Mermaid engine uses: ``release [termination_proven & !offline_requested]``,
then what it does to the flags that steer decisions (``/ cancel_requested=true``). A row
that keeps the state is a loop; each flag is a note beside the states where it matters.

We render the tables directly rather than through ``transitions``' ``GraphMachine``:
that engine emits styling and active-state markup (``classDef``, ``Class``) meant for
a live model, which clutters a static README diagram. The data is the same.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from .effects import describe
from .states import CaseState, GpuState
from .tables import (
    CASE_FLAGS,
    CASE_TRANSITIONS,
    GPU_FLAGS,
    GPU_TRANSITIONS,
    SAME,
    FlagSpec,
    TransitionSpec,
)

__all__ = [
    "MACHINES",
    "case_diagram",
    "edge_dest",
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

_FLAGS: dict[str, tuple[FlagSpec, ...]] = {"case": CASE_FLAGS, "gpu": GPU_FLAGS}
_TITLES = {"case": "Case", "gpu": "GPU"}


def _flag_fields(spec: TransitionSpec) -> frozenset[str]:
    flags = CASE_FLAGS if spec in CASE_TRANSITIONS else GPU_FLAGS
    return frozenset(f.field for f in flags)


def edge_label(spec: TransitionSpec) -> str:
    """The text on one edge: the trigger, its guards (``!`` marks an ``unless``), its flags."""
    guards = [*spec.conditions, *(f"!{name}" for name in spec.unless)]
    text = f"{spec.trigger} [{' & '.join(guards)}]" if guards else str(spec.trigger)
    flags = _flag_fields(spec)
    sets = [f"{k}={describe(v)}" for k, v in spec.effects if k in flags]
    return f"{text} / {', '.join(sets)}" if sets else text


def edge_dest(spec: TransitionSpec, source: str) -> str:
    """Where the edge from ``source`` goes (a row that keeps the state loops)."""
    return source if spec.dest == SAME else str(spec.dest)


def _render(
    states: Sequence[str],
    specs: Sequence[TransitionSpec],
    initial: str,
    final: Sequence[str],
    flags: Sequence[FlagSpec],
) -> str:
    lines = ["stateDiagram-v2", "  direction LR", f"  [*] --> {initial}"]
    # Edges grouped by source in state order, so the text reads machine by state.
    for state in states:
        for spec in specs:
            if state in (str(s) for s in spec.source):
                lines.append(f"  {state} --> {edge_dest(spec, state)}: {edge_label(spec)}")
    lines.extend(f"  {state} --> [*]" for state in final)
    for state in states:
        notes = [f"    {f.field}: {f.doc}" for f in flags if state in f.states]
        if notes:
            lines.extend([f"  note right of {state}", *notes, "  end note"])
    return "\n".join(lines) + "\n"


def mermaid(machine: str) -> str:
    """The Mermaid ``stateDiagram-v2`` text of one machine.

    Args:
        machine: ``"case"`` or ``"gpu"``.

    Raises:
        KeyError: for an unknown machine name.
    """
    states, specs, initial, final = MACHINES[machine]
    return _render(states, specs, initial, final, _FLAGS[machine])


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
