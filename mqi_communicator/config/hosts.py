"""The ``hosts:`` and ``gpus:`` sections: where jobs run and on which GPU.

A GPU's mapping keys are checked against its host's scheduler by :class:`.model.Config`,
which sees both sections.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import Field, PositiveFloat, ValidationInfo, field_validator, model_validator

from .validation import _base_dir, _fail, _number_text, _resolve, _Strict

__all__ = ["GpuConfig", "HostConfig", "SchedulerConfig"]


class SchedulerConfig(_Strict):
    """Which scheduler runs jobs on a host, and its options."""

    kind: Literal["local", "pueue", "slurm"]
    #: argv prefix that reaches ``pueue`` on the host (e.g. ``["pueue", "-c", "cfg.yml"]``).
    pueue_command: list[str] = Field(default_factory=lambda: ["pueue"], min_length=1)
    #: Slurm: default partition and GRES when a GPU names none.
    partition: str | None = None
    gres: str | None = None
    extra_sbatch_args: list[str] = Field(default_factory=list)
    #: Seconds allowed for each scheduler command on the host.
    timeout_s: PositiveFloat = 60.0
    #: Local scheduler: seconds between SIGTERM and SIGKILL when killing.
    kill_grace_s: float = Field(default=10.0, ge=0)


class HostConfig(_Strict):
    """How to reach one host, its scheduler and its remote base directory."""

    transport: Literal["local", "ssh"] = "local"
    hostname: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    connect_timeout_s: PositiveFloat = 10.0
    #: Upload stream compression (ssh only): ``auto`` measures the link and the case
    #: and compresses only when that is faster (remote/transfer/compression.py); the others force.
    compression: Literal["auto", "off", "zstd", "zlib"] = "auto"
    #: Environment variables set for every command run on the host (and so the jobs).
    env: dict[str, str] = Field(default_factory=dict)
    scheduler: SchedulerConfig
    #: Case directories are uploaded to ``<remote_base>/mqic_case_<id>_a<attempt>``.
    remote_base: str

    @field_validator("env", mode="before")
    @classmethod
    def _env_text(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: _number_text(v) for k, v in value.items()}
        return value

    @field_validator("key_file", "known_hosts")
    @classmethod
    def _resolve_paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @field_validator("remote_base")
    @classmethod
    def _remote_base(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("transport", "local") == "ssh":
            if not PurePosixPath(value).is_absolute():
                raise ValueError(f"expected an absolute POSIX path, got {value!r}")
            return value
        # Local transport: a relative base is relative to the config file.
        local = Path(value).expanduser()
        return (
            local.as_posix()
            if local.is_absolute()
            else (_base_dir(info) / local).resolve().as_posix()
        )

    @model_validator(mode="after")
    def _check(self) -> HostConfig:
        if self.transport == "ssh" and not self.hostname:
            _fail("hostname", "required when transport is 'ssh'")
        return self


class GpuConfig(_Strict):
    """One GPU resource: its name, its host, and what it maps to on that host."""

    name: str = Field(min_length=1)
    host: str
    pueue_group: str | None = None
    slurm_partition: str | None = None
    slurm_gres: str | None = None
    cuda_devices: str | None = None

    @field_validator(
        "name", "host", "pueue_group", "slurm_partition", "cuda_devices", mode="before"
    )
    @classmethod
    def _number_as_text(cls, value: object) -> object:
        return _number_text(value)
