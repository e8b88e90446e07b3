"""The whole configuration (:class:`Config`): one YAML file, every key checked.

Each section is a model in the module named after it (``intake``, ``engine``, ``log``,
``web``, ``hosts``, ``hooks``); what needs two sections at once (a GPU's keys against
its host's scheduler, the takeover grace, the folder layout) is checked here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .engine import EngineConfig
from .hooks import HooksConfig
from .hosts import GpuConfig, HostConfig
from .intake import IntakeConfig
from .layout import layout_errors
from .log import LogConfig
from .validation import _base_dir, _fail, _resolve, _Strict
from .web import WebConfig

__all__ = ["DEFAULT_COMMAND", "DEFAULT_DB_NAME", "Config"]

#: The MOQUI steps, run inside the uploaded case directory by the job wrapper. The
#: host's ``env`` must define ``MOQUI_INTERPRETER`` (turns the case's DICOM/log files
#: into MOQUI input) and ``MOQUI_SIM`` (runs the simulation); both are shell command
#: lines. Unset variables fail the job at once with a clear message in its log.
DEFAULT_COMMAND: tuple[str, ...] = (
    "sh",
    "-c",
    'set -e; eval "${MOQUI_INTERPRETER:?set MOQUI_INTERPRETER in the host env}";'
    ' eval "${MOQUI_SIM:?set MOQUI_SIM in the host env}"',
)

#: The SQLite file created next to the config file when ``database_url`` is not given.
DEFAULT_DB_NAME = "mqi-communicator.db"


#: Which GPU mapping keys each scheduler kind accepts, and which it requires.
_GPU_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "local": (frozenset({"cuda_devices"}), frozenset()),
    "pueue": (frozenset({"pueue_group", "cuda_devices"}), frozenset({"pueue_group"})),
    "slurm": (frozenset({"slurm_partition", "slurm_gres", "cuda_devices"}), frozenset()),
}
_MAPPING_KEYS = ("pueue_group", "slurm_partition", "slurm_gres", "cuda_devices")


class Config(_Strict):
    """The whole configuration of one communicator."""

    watch_dir: Path
    results_dir: Path
    #: SQLAlchemy URL, or a bare path to a SQLite file. Default: a SQLite file next to
    #: the config file (``mqi-communicator.db``).
    database_url: str
    command: list[str] = Field(default_factory=lambda: list(DEFAULT_COMMAND), min_length=1)
    intake: IntakeConfig = IntakeConfig()
    engine: EngineConfig = EngineConfig()
    log: LogConfig = LogConfig()
    web: WebConfig = WebConfig()
    hosts: dict[str, HostConfig] = Field(min_length=1)
    gpus: list[GpuConfig] = Field(min_length=1)
    hooks: HooksConfig = HooksConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_db(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and data.get("database_url") is None:
            data = dict(data)
            db = (_base_dir(info) / DEFAULT_DB_NAME).resolve()
            data["database_url"] = f"sqlite:///{db.as_posix()}"
        return data

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from ..errors import ConfigError
        from ..persistence.engine_setup import normalize_url

        try:
            normalize_url(value)
        except ConfigError as err:
            raise ValueError(str(err)) from err
        return value

    @field_validator("watch_dir", "results_dir")
    @classmethod
    def _resolve_dirs(cls, value: Path, info: ValidationInfo) -> Path:
        resolved = _resolve(value, info)
        assert resolved is not None
        return resolved

    @model_validator(mode="after")
    def _cross_check(self) -> Config:
        seen: set[str] = set()
        for i, gpu in enumerate(self.gpus):
            where = f"gpus[{i}]"
            if gpu.name in seen:
                _fail(f"{where}.name", f"expected a unique GPU name, got {gpu.name!r} twice")
            seen.add(gpu.name)
            host = self.hosts.get(gpu.host)
            if host is None:
                known = ", ".join(repr(h) for h in self.hosts)
                _fail(f"{where}.host", f"expected one of the hosts {known}, got {gpu.host!r}")
            assert host is not None
            kind = host.scheduler.kind
            allowed, required = _GPU_KEYS[kind]
            for key in _MAPPING_KEYS:
                if getattr(gpu, key) is not None and key not in allowed:
                    _fail(
                        f"{where}.{key}",
                        f"not used by a {kind!r} scheduler (host {gpu.host!r}); expected one of "
                        + ", ".join(sorted(allowed)),
                    )
            for key in sorted(required):
                if getattr(gpu, key) is None:
                    _fail(f"{where}.{key}", f"required for a GPU on a {kind!r} scheduler host")
        grace = self.engine.submit_grace_s
        if grace is not None and grace < self.min_takeover_grace_s:
            _fail(
                "engine.submit_grace_s",
                f"expected at least engine.transfer_timeout_s + the longest"
                f" hosts.*.scheduler.timeout_s = {self.min_takeover_grace_s:g} s (a shorter"
                f" grace lets another engine take over a case whose upload may still run),"
                f" got {grace:g}; or leave it out to use that minimum",
            )
        for key, problem in layout_errors(self)[:1]:  # overlapping folders, shared devices
            _fail(key, problem)
        return self

    @property
    def min_takeover_grace_s(self) -> float:
        """The longest a start step can take: the upload plus the submit command."""
        submit = max(h.scheduler.timeout_s for h in self.hosts.values())
        return self.engine.transfer_timeout_s + submit

    @property
    def takeover_grace_s(self) -> float:
        """``engine.submit_grace_s``, or when omitted :attr:`min_takeover_grace_s`."""
        grace = self.engine.submit_grace_s
        return grace if grace is not None else self.min_takeover_grace_s
