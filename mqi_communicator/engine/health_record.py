"""The one place the engine writes host health: a listener on :class:`HostHealth`.

The engine decides "is this host down" in memory (:mod:`.backoff`); other processes
(``status``, ``top``, the web console) can only see the database. :class:`HealthRecorder`
writes a host's row when its health CHANGES (down; still down with a new retry time; up
again), never on every tick: an answer from a host this process already recorded as up
writes nothing. Each write is one short transaction through the store, which also
enqueues the ``host_down``/``host_up`` hook event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from ..errors import ConflictError
from ..persistence import Store
from ..persistence.host_health import record_host_health
from .backoff import HostChange

__all__ = ["HealthRecorder"]

log = logging.getLogger("mqi_communicator.engine")


class HealthRecorder:
    """Writes host health changes to ``store`` (pass as ``HostHealth.on_change``).

    Args:
        store: Where to write.
        clock: Stamps answers (failures carry their own time).
    """

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        #: What this process last wrote per host (up?); absent: nothing yet.
        self._written: dict[str, bool] = {}

    def __call__(self, change: HostChange) -> None:
        """Record ``change`` unless it is an answer from a host already recorded up."""
        if change.up and self._written.get(change.host) is True:
            return
        at = change.at if change.at is not None else self._clock()
        write = partial(
            record_host_health,
            host=change.host,
            up=change.up,
            at=at,
            failures=change.failures,
            error=change.error,
            retry_at=change.retry_at,
        )
        try:
            event = self._store.write(write)
        except ConflictError as err:
            # A busy database: the decision stands in memory; the row catches up at the
            # next change (an answer is written again until it succeeds).
            log.warning("host %s: health not recorded this time: %s", change.host, err)
            return
        self._written[change.host] = change.up
        if event is not None:
            log.info("host %s is %s (recorded)", change.host, "up" if change.up else "down")
