"""The communicator's configuration: pydantic models and the YAML loader."""

from .load import apply_env_overrides, load_config, parse_config
from .model import (
    DEFAULT_COMMAND,
    BackoffConfig,
    Config,
    EngineConfig,
    GpuConfig,
    HooksConfig,
    HookTargetConfig,
    HostConfig,
    IntakeConfig,
    LogConfig,
    SchedulerConfig,
)
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
