"""``diagram``: the state machines as Mermaid text, generated from the transition tables."""

from __future__ import annotations

import click

from ..statemachine.diagram import markdown, mermaid

__all__ = ["diagram"]


@click.command()
@click.option(
    "--machine",
    type=click.Choice(["case", "gpu"]),
    default=None,
    help="Print only this machine, as bare Mermaid (e.g. for `mmdc`).",
)
def diagram(machine: str | None) -> None:
    """Print the case and GPU state diagrams (Mermaid stateDiagram-v2).

    Without --machine, prints the Markdown that README.md holds between its
    diagram markers: both machines, each in a fenced mermaid block.
    """
    click.echo(mermaid(machine) if machine else markdown(), nl=False)
