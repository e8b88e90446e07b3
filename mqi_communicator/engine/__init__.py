"""The communicator's engine: the reconciler and what it runs on."""

from .backoff import Backoff, HostHealth
from .reconcile import Reconciler
from .runtime import EngineSettings, GpuRuntime, HostRuntime, TickReport

__all__ = [
    "Backoff",
    "EngineSettings",
    "GpuRuntime",
    "HostHealth",
    "HostRuntime",
    "Reconciler",
    "TickReport",
]
