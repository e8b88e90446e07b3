"""Notifications: send outbox events to the configured hooks (command or HTTP webhook).

Events are written by the store in the transaction of their transition
(:mod:`mqi_communicator.persistence.outbox`); :class:`HookDispatcher` delivers them after
the commit, beside the engine, in its own thread.
"""

from .dispatcher import DeliveryStats, HookDispatcher
from .senders import send_command, send_http

__all__ = ["DeliveryStats", "HookDispatcher", "send_command", "send_http"]
