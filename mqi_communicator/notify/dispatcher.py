"""The delivery loop: due outbox events to hooks, with retries, backoff and a give-up.

It runs in its own thread in the engine process, so a hook that fails, hangs or floods
never delays a tick: the engine only ever writes outbox rows (in the transition's own
transaction). Delivery is at least once: a row is marked delivered only after every hook
that wants it accepted it, and a row taken by a sender that died comes back when its
lease ends. Receivers de-duplicate on ``event_id``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from ..config import HooksConfig, HookTargetConfig
from ..engine.backoff import Backoff
from ..engine.runtime import utcnow
from ..persistence import Store
from ..persistence.outbox import (
    OutboxRow,
    OutboxStatus,
    has_due,
    record_outcome,
    release,
    take_due,
)
from .senders import send_command, send_http

__all__ = ["DeliveryStats", "HookDispatcher", "Sender"]

log = logging.getLogger("mqi_communicator.notify")

#: ``sender(hook name, target, body, event row, cancel) -> None or an error line``.
Sender = Callable[[str, HookTargetConfig, bytes, OutboxRow, threading.Event], "str | None"]

#: Beyond the hooks' own timeouts, how long a taken row stays leased to its sender.
_LEASE_MARGIN_S = 30.0
#: After a full batch, the next pass starts this soon (a backlog drains, politely).
_BACKLOG_PAUSE_S = 0.05


@dataclass
class DeliveryStats:
    """Counters of this process's deliveries (the outbox holds the durable ones)."""

    delivered: int = 0
    hook_failures: int = 0
    gave_up: int = 0
    skipped: int = 0


def default_sender(
    name: str, target: HookTargetConfig, body: bytes, row: OutboxRow, cancel: threading.Event
) -> str | None:
    """Send ``body`` with the target's method (command on stdin, or HTTP POST)."""
    if target.command is not None:
        env = {"MQI_EVENT": row.kind.value, "MQI_EVENT_ID": row.event_id, "MQI_HOOK": name}
        return send_command(target.command, body, target.timeout_s, env, cancel)
    assert target.url is not None  # the config requires one of the two
    headers = {"X-MQI-Event": row.kind.value, "X-MQI-Event-Id": row.event_id, **target.headers}
    return send_http(target.url, body, target.timeout_s, headers)


class HookDispatcher:
    """Delivers outbox events to the configured hooks.

    Args:
        store: The store (its own connections; safe beside the engine's).
        hooks: Targets and the delivery policy.
        clock: Aware UTC now.
        sender: How one hook is called (tests may count calls; default: the real ones).
    """

    def __init__(
        self,
        store: Store,
        hooks: HooksConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        sender: Sender = default_sender,
    ) -> None:
        self._store = store
        self._hooks = hooks
        self._clock = clock
        self._sender = sender
        b = hooks.backoff
        self._backoff = Backoff(base_s=b.base_s, factor=b.factor, cap_s=b.cap_s)
        worst = sum(t.timeout_s for t in hooks.targets.values())
        self._lease = timedelta(seconds=worst + _LEASE_MARGIN_S)
        self.stats = DeliveryStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _wanted(self, row: OutboxRow) -> list[str]:
        return [
            name
            for name, t in self._hooks.targets.items()
            if t.events is None or row.kind.value in t.events
        ]

    def _deliver(self, row: OutboxRow) -> None:
        wanted = [n for n in self._wanted(row) if n not in row.done_hooks]
        accepted: list[str] = []
        errors: list[str] = []
        attempt = row.attempts + 1
        for name in wanted:
            target = self._hooks.targets[name]
            document = {**row.document, "delivery": {"hook": name, "attempt": attempt}}
            body = json.dumps(document, ensure_ascii=False).encode("utf-8")
            try:
                error = self._sender(name, target, body, row, self._stop)
            except Exception as exc:  # a hook must never take the loop down
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                accepted.append(name)
            else:
                errors.append(f"{name}: {error}")
                log.warning(
                    "hook %s: event %s (%s) not delivered: %s",
                    name,
                    row.event_id,
                    row.kind.value,
                    error,
                )
        now = self._clock()
        retry_at: datetime | None = None
        if not self._wanted(row):
            status = OutboxStatus.SKIPPED
            self.stats.skipped += 1
        elif not errors:
            status = OutboxStatus.DELIVERED
            self.stats.delivered += 1
        elif attempt >= self._hooks.max_attempts:
            status = OutboxStatus.FAILED
            self.stats.gave_up += 1
            log.error(
                "event %s (%s): giving up after %d attempts", row.event_id, row.kind.value, attempt
            )
        else:
            status = OutboxStatus.PENDING
            retry_at = now + self._backoff.delay(attempt)
        self.stats.hook_failures += len(errors)
        self._store.write(
            lambda s: record_outcome(
                s, row.id, now, accepted=accepted, errors=errors, status=status, retry_at=retry_at
            )
        )

    def deliver_due(self) -> int:
        """One bounded pass: send up to ``batch_size`` due events; returns how many."""
        now = self._clock()
        if not self._store.read(lambda s: has_due(s, now)):
            return 0
        rows = self._store.write(lambda s: take_due(s, now, self._hooks.batch_size, self._lease))
        for i, row in enumerate(rows):
            if self._stop.is_set():
                self._store.write(partial(release, row_ids=[r.id for r in rows[i:]], now=now))
                break
            self._deliver(row)
        return len(rows)

    # -- the background thread ---------------------------------------------------------

    def start(self) -> None:
        """Start delivering in a daemon thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mqi-hooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread: a running command hook is killed, an HTTP call runs out.

        Waits at most one hook timeout; an interrupted event stays pending (at least once).
        """
        self._stop.set()
        if self._thread is not None:
            longest = max((t.timeout_s for t in self._hooks.targets.values()), default=0.0)
            self._thread.join(longest + 5.0)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.deliver_due()
            except Exception:
                # A database hiccup: the rows stay pending, try again next interval.
                log.exception("hook delivery pass failed")
                handled = 0
            full = handled >= self._hooks.batch_size
            self._stop.wait(_BACKLOG_PAUSE_S if full else self._hooks.poll_interval_s)
