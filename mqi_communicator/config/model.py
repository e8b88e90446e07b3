"""The configuration as pydantic models: one YAML file, every key checked.

Every model forbids unknown keys, so a misspelt key is an error rather than a silently
ignored default. Relative paths are resolved against the directory of the config file
(passed as validation context ``base_dir``), or the current directory for objects
built in code.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .layout import layout_errors
from .web import WebConfig

__all__ = [
    "DEFAULT_COMMAND",
    "DEFAULT_DB_NAME",
    "BackoffConfig",
    "Config",
    "EngineConfig",
    "GpuConfig",
    "HookEvent",
    "HookTargetConfig",
    "HooksConfig",
    "HostConfig",
    "IntakeConfig",
    "LogConfig",
    "SchedulerConfig",
    "check_results_subdir",
]

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


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context if isinstance(info.context, dict) else {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    value = value.expanduser()
    return value if value.is_absolute() else (_base_dir(info) / value).resolve()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntakeConfig(_Strict):
    """How directories in the watch folder become cases."""

    #: A directory is a case once nothing under it changed for this long.
    quiescence_s: float = Field(default=5.0, ge=0)
    #: When set, a directory is a case once this file exists in it (quiescence ignored).
    ready_marker: str | None = None
    #: Full rescans of the watch folder, in case the file-system watcher missed events.
    scan_interval_s: PositiveFloat = 30.0

    @field_validator("ready_marker")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value):
            raise ValueError("expected a plain file name (no directories)")
        return value


class BackoffConfig(_Strict):
    """Per-host exponential backoff: ``base_s * factor**(n-1)``, capped at ``cap_s``."""

    base_s: PositiveFloat = 5.0
    factor: float = Field(default=2.0, ge=1.0)
    cap_s: PositiveFloat = 600.0


class EngineConfig(_Strict):
    """Timeouts, intervals and the retry policy of the reconciler."""

    poll_interval_s: PositiveFloat = 10.0
    #: Measured from the job's start; the job is killed after this long.
    job_timeout_s: PositiveFloat = 21600.0
    #: A kill not confirmed by a poll within this window puts the GPU in ``zombie``.
    kill_confirm_s: PositiveFloat = 120.0
    max_attempts: PositiveInt = 3
    max_retrieve_failures: PositiveInt = 5
    #: The folder inside the remote case directory that the job writes its results into;
    #: only it is downloaded. The case's own folder of that name (any letter case) is
    #: never uploaded, so everything in it was written by the job (README, "How it works").
    results_subdir: str = "output"
    label_prefix: str = Field(default="mqic", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    transfer_timeout_s: PositiveFloat = 3600.0
    #: With several engines (PostgreSQL): a case's lease that is not renewed for this
    #: long (by the database's clock) has expired, and another engine may take the case
    #: over. The working engine renews it every ``lease_ttl_s / 3``.
    lease_ttl_s: float = Field(default=60.0, ge=2.0)
    #: With several engines: how long a ``submitting`` case that holds NO lease (rows
    #: from before leases) must stay unchanged before another engine recovers it. It
    #: must cover a whole start step, so at least ``transfer_timeout_s`` plus the
    #: longest ``hosts.*.scheduler.timeout_s``; omitted, it is exactly that
    #: (:attr:`Config.takeover_grace_s`).
    submit_grace_s: PositiveFloat | None = None
    #: What happens to a case's remote folder (and its ``.mqi`` markers) once the case
    #: ended: ``keep_failed`` removes it after a verified retrieval and keeps failed and
    #: cancelled ones for diagnosis; ``delete`` removes those too; ``keep`` removes
    #: nothing (engine/retention.py).
    remote_retention: Literal["delete", "keep", "keep_failed"] = "keep_failed"
    backoff: BackoffConfig = BackoffConfig()

    @field_validator("results_subdir")
    @classmethod
    def _results_subdir(cls, value: str) -> str:
        return check_results_subdir(value)


def check_results_subdir(value: str) -> str:
    """``value`` as a results folder: a relative POSIX path inside the case directory.

    Trailing slashes are dropped. The whole case directory (``""``, ``"."``) is refused:
    it holds the uploaded files, which must never count as results of the run.

    Raises:
        ValueError: saying what is wrong and what is expected.
    """
    norm = value.rstrip("/")
    if norm in ("", "."):
        raise ValueError(
            "the whole case directory cannot be the results: the uploaded files would "
            "count as results of the run; name the folder the job writes, e.g. 'output'"
        )
    parts = norm.split("/")
    if (
        norm.startswith("/")
        or any(ch in norm for ch in "\\\0\n\r")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(
            f"expected a relative path of plain names inside the case directory "
            f"(e.g. 'output'), got {value!r}"
        )
    if parts[0].casefold() == ".mqi":
        raise ValueError(f"{value!r} is the communicator's marker folder, not a results folder")
    return norm


class LogConfig(_Strict):
    """The rotating log file and the time zone its timestamps are written in."""

    file: Path | None = None
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: An IANA zone name, e.g. ``Asia/Seoul`` (the original site logs in KST).
    timezone: str = "UTC"
    max_bytes: PositiveInt = 10_000_000
    backups: int = Field(default=5, ge=0)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("file")
    @classmethod
    def _resolve_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(
                f"expected an IANA time zone such as 'Asia/Seoul', got {value!r}"
            ) from err
        return value


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


#: The event kinds a hook may subscribe to (``persistence.outbox.EventKind``; a test
#: keeps the two equal). Host events are accepted but not emitted yet: the engine keeps
#: host health in memory only.
HookEvent = Literal[
    "case_failed", "case_completed", "gpu_zombie", "gpu_recovered", "host_down", "host_up"
]


class HookTargetConfig(_Strict):
    """One notification target: a command (JSON on stdin) or an HTTP webhook (POST JSON)."""

    #: argv of a local command; the event document arrives on its stdin.
    command: list[str] | None = Field(default=None, min_length=1)
    #: An http(s) URL that receives the document as ``POST application/json``.
    url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    #: Extra HTTP headers (e.g. ``Authorization``); never logged.
    headers: dict[str, str] = Field(default_factory=dict)
    #: A call that takes longer is killed and counts as failed.
    timeout_s: PositiveFloat = 10.0
    #: The events it receives (default: every kind).
    events: list[HookEvent] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> HookTargetConfig:
        if (self.command is None) == (self.url is None):
            _fail("command/url", "expected exactly one of 'command' or 'url'")
        if self.headers and self.url is None:
            _fail("headers", "only used with 'url'")
        return self


class HooksConfig(_Strict):
    """Notifications: targets and the delivery policy of the outbox."""

    targets: dict[str, HookTargetConfig] = Field(default_factory=dict)
    #: Attempts per event before it is marked failed.
    max_attempts: PositiveInt = 10
    #: Wait between attempts of one event.
    backoff: BackoffConfig = BackoffConfig()
    #: How often the delivery loop looks for new events.
    poll_interval_s: PositiveFloat = 2.0
    #: Events sent per pass at most (a flood of events waits its turn).
    batch_size: PositiveInt = Field(default=20, le=1000)

    @field_validator("targets")
    @classmethod
    def _names(cls, value: dict[str, HookTargetConfig]) -> dict[str, HookTargetConfig]:
        for name in value:
            if not name or "," in name:
                raise ValueError(f"expected a hook name without commas, got {name!r}")
        return value


_SSH_HOSTNAME = "required when transport is 'ssh'"


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


def _number_text(value: object) -> object:
    """YAML reads ``cuda_devices: 0`` as a number; such fields are text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _fail(path: str, msg: str) -> None:
    raise PydanticCustomError("at_path", "{path}: {msg}", {"path": path, "msg": msg})
