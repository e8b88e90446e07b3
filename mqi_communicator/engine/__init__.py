"""The communicator's engine: the reconciler and what it runs on.

Names are imported on first use (PEP 562): a view that needs only a small module of
this package (``engine.runtime``, ``engine.backoff``) does not load the reconciler and,
through it, every transport and scheduler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from .backoff import Backoff, HostHealth
    from .reconcile import Reconciler
    from .runtime import EngineSettings, GpuRuntime, HostRuntime, TickReport

#: Public name -> the module (relative to this package) that defines it.
_LAZY = {
    "Backoff": ".backoff",
    "EngineSettings": ".runtime",
    "GpuRuntime": ".runtime",
    "HostHealth": ".backoff",
    "HostRuntime": ".runtime",
    "Reconciler": ".reconcile",
    "TickReport": ".runtime",
}


__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = [
    "Backoff",
    "EngineSettings",
    "GpuRuntime",
    "HostHealth",
    "HostRuntime",
    "Reconciler",
    "TickReport",
]
