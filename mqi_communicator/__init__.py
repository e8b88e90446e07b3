"""MQI Communicator: runs MOQUI QA cases on remote GPU servers, crash-safely.

The public names are re-exported here; everything else is internal. Names other than
the errors are imported on first use (PEP 562), so ``import mqi_communicator`` (and
every CLI command) does not pay for SQLAlchemy, Fabric and watchdog up front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from .errors import (
    CaseContentError,
    ConfigError,
    ConflictError,
    GuardRejectedError,
    HostKeyError,
    HostUnreachableError,
    InvalidTransitionError,
    MqiError,
    NotFoundError,
    PermanentError,
    RemoteCommandError,
    SchedulerOutputError,
    SchedulerUnavailableError,
    SchemaMismatchError,
    SubmissionRejectedError,
    TransferError,
    TransientError,
)

if TYPE_CHECKING:
    from .config import Config, load_config
    from .dblock import EngineLockedError
    from .engine import Reconciler, TickReport
    from .persistence import CaseRecord, GpuRecord, TransitionRecord
    from .service import Communicator
    from .statemachine import CaseState, Evidence, EvidenceKind, GpuState

#: Public name -> the module (relative to this package) that defines it.
_LAZY = {
    "CaseRecord": ".persistence",
    "CaseState": ".statemachine",
    "Communicator": ".service",
    "Config": ".config",
    "EngineLockedError": ".dblock",
    "Evidence": ".statemachine",
    "EvidenceKind": ".statemachine",
    "GpuRecord": ".persistence",
    "GpuState": ".statemachine",
    "Reconciler": ".engine",
    "TickReport": ".engine",
    "TransitionRecord": ".persistence",
    "load_config": ".config",
}


__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = [
    "CaseContentError",
    "CaseRecord",
    "CaseState",
    "Communicator",
    "Config",
    "ConfigError",
    "ConflictError",
    "EngineLockedError",
    "Evidence",
    "EvidenceKind",
    "GpuRecord",
    "GpuState",
    "GuardRejectedError",
    "HostKeyError",
    "HostUnreachableError",
    "InvalidTransitionError",
    "MqiError",
    "NotFoundError",
    "PermanentError",
    "Reconciler",
    "RemoteCommandError",
    "SchedulerOutputError",
    "SchedulerUnavailableError",
    "SchemaMismatchError",
    "SubmissionRejectedError",
    "TickReport",
    "TransferError",
    "TransientError",
    "TransitionRecord",
    "load_config",
]
__version__ = "0.1.0"
