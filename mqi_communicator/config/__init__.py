"""The communicator's configuration: pydantic models and the YAML loader.

:mod:`.model` holds the whole :class:`Config`; each section is a module of its own name.
"""

from .engine import BackoffConfig, EngineConfig
from .hooks import HooksConfig, HookTargetConfig
from .hosts import GpuConfig, HostConfig, SchedulerConfig
from .intake import IntakeConfig
from .load import apply_env_overrides, load_config, parse_config
from .log import LogConfig
from .model import DEFAULT_COMMAND, Config
from .transfers import TransfersConfig
from .web import WebConfig

__all__ = [
    "DEFAULT_COMMAND",
    "BackoffConfig",
    "Config",
    "EngineConfig",
    "GpuConfig",
    "HookTargetConfig",
    "HooksConfig",
    "HostConfig",
    "IntakeConfig",
    "LogConfig",
    "SchedulerConfig",
    "TransfersConfig",
    "WebConfig",
    "apply_env_overrides",
    "load_config",
    "parse_config",
]
