"""The communicator's engine: the reconciler and what it runs on.

Names are imported on first use (PEP 562): a view that needs only a small module of
this package (``engine.runtime``, ``engine.backoff``) does not load the reconciler and,
through it, every transport and scheduler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "Backoff",
    "EngineSettings",
    "GpuRuntime",
    "HostHealth",
    "HostRuntime",
    "Reconciler",
    "TickReport",
]
