"""MQI Communicator: runs MOQUI QA cases on remote GPU servers, crash-safely.

The public names are re-exported here; everything else is internal.
"""

from .config import Config, load_config
from .dblock import EngineLockedError
from .engine import Reconciler, TickReport
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
from .persistence import CaseRecord, GpuRecord, TransitionRecord
from .service import Communicator
from .statemachine import CaseState, Evidence, EvidenceKind, GpuState

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
