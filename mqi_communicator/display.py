"""How stored facts read to a person: one wording for the CLI and the web console.

Below both (the CLI starts the web console, so the web console must not import the
CLI): a time and an audit row's evidence read the same in ``cases show`` and on the page.
"""

from __future__ import annotations

from datetime import datetime

from .persistence import TransitionRecord

__all__ = ["evidence_text", "fmt_time"]


def fmt_time(value: datetime | None) -> str:
    """A short human time (UTC as stored, to the second); ``-`` for None."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def evidence_text(t: TransitionRecord) -> str:
    """The evidence of one audit row in one short phrase ("" if none)."""
    ev = t.evidence
    if ev is None:
        return ""
    parts = [ev.kind.value]
    if ev.label:
        parts.append(f"label={ev.label}")
    if ev.job_id:
        parts.append(f"job={ev.job_id}")
    if ev.detail:
        parts.append(ev.detail)
    return " ".join(parts)
