"""Extension points the web console reads but other work provides (clearly marked hooks).

Each returns None while its provider does not exist yet; the pages and ``/metrics``
then say plainly that the figure is not available, rather than showing a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..service import Communicator

__all__ = ["HostStatus", "host_health"]


@dataclass(frozen=True)
class HostStatus:
    """A host's health as the engine last recorded it."""

    up: bool
    since: datetime | None
    last_error: str


def host_health(comm: Communicator) -> Mapping[str, HostStatus] | None:
    """HOOK(host health): each host's health as persisted by the running engine, or None.

    The engine keeps host health in memory only (``Reconciler.health``, in the engine's
    process), so the web console cannot see it yet; the overview then shows the hosts
    from the config with their GPUs' states and says health is not recorded.
    """
    del comm
    return None
