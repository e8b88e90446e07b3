"""Extension points the web console reads but other work provides (clearly marked hooks).

Each returns None while its provider does not exist yet; the pages and ``/metrics``
then say plainly that the figure is not available, rather than showing a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..persistence import CaseRecord
from ..service import Communicator

__all__ = ["HostStatus", "hook_failures", "host_health", "job_log_tail"]


@dataclass(frozen=True)
class HostStatus:
    """A host's health as the engine last recorded it."""

    up: bool
    since: datetime | None
    last_error: str


def job_log_tail(comm: Communicator, case: CaseRecord, lines: int = 100) -> str | None:
    """HOOK(cases log): the last ``lines`` lines of the case's job log, or None.

    Provided by the ``cases log`` work (fetching the log over the host's transport);
    until it is merged the case page shows "log not available". Called off the page's
    first render (its own htmx request), so a slow host never delays the page.
    """
    del comm, case, lines
    return None


def host_health(comm: Communicator) -> Mapping[str, HostStatus] | None:
    """HOOK(host health): each host's health as persisted by the running engine, or None.

    The engine keeps host health in memory only (``Reconciler.health``, in the engine's
    process), so the web console cannot see it yet; the overview then shows the hosts
    from the config with their GPUs' states and says health is not recorded.
    """
    del comm
    return None


def hook_failures(comm: Communicator) -> Mapping[str, int] | None:
    """HOOK(notification outbox): failed hook deliveries per hook name, or None.

    The notification hooks' outbox table is added by the hooks work; ``/metrics``
    exports ``mqi_hook_failures_total`` from this once it returns a mapping.
    """
    del comm
    return None
