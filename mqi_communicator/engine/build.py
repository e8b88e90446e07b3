"""Turn a :class:`~mqi_communicator.config.Config` into the parts the reconciler runs on.

Transports and schedulers are built lazily in the sense that nothing connects here:
an SSH transport opens its connection on first use, so building never blocks on a
dead host.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..config import Config, HostConfig
from ..persistence import Store
from ..remote.protocol import GpuBinding, Scheduler, Transport
from ..remote.schedulers.local.scheduler import LocalScheduler
from ..remote.schedulers.pueue.scheduler import PueueScheduler
from ..remote.schedulers.slurm.scheduler import SlurmScheduler
from ..remote.transport.local import LocalTransport
from ..statemachine.decide import Policy
from .backoff import Backoff
from .runtime import EngineSettings, GpuRuntime, HostRuntime

__all__ = [
    "EngineParts",
    "build_backoff",
    "build_engine_parts",
    "build_gpus",
    "build_host",
    "build_hosts",
    "build_policy",
    "build_settings",
    "is_sqlite_url",
]


@dataclass(frozen=True)
class EngineParts:
    """Everything :class:`~mqi_communicator.engine.Reconciler` needs, built from a config."""

    store: Store
    hosts: dict[str, HostRuntime]
    gpus: list[GpuRuntime]
    policy: Policy
    settings: EngineSettings
    backoff: Backoff


def is_sqlite_url(url: str) -> bool:
    """True for a SQLite URL (or a bare file path, which means SQLite)."""
    return url.startswith("sqlite") or "://" not in url


def build_transport(name: str, host: HostConfig) -> Transport:
    """The transport of one configured host (no connection is made here)."""
    if host.transport == "local":
        return LocalTransport(name, env=host.env)
    assert host.hostname is not None  # the config validator requires it for ssh
    from ..remote.transport.ssh import SshTransport  # paramiko: only for ssh hosts

    return SshTransport(
        name,
        host.hostname,
        port=host.port,
        user=host.user,
        key_filename=host.key_file,
        known_hosts=host.known_hosts,
        accept_new_host_key=host.accept_new_host_key,
        connect_timeout=host.connect_timeout_s,
        env=host.env,
        compression=host.compression,
    )


def build_scheduler(host: HostConfig, transport: Transport) -> Scheduler:
    """The scheduler adapter of one configured host."""
    sched = host.scheduler
    if sched.kind == "local":
        return LocalScheduler(transport, timeout=sched.timeout_s, kill_grace_s=sched.kill_grace_s)
    if sched.kind == "pueue":
        return PueueScheduler(
            transport, sched.pueue_command, timeout=sched.timeout_s, kill_grace_s=sched.kill_grace_s
        )
    return SlurmScheduler(
        transport,
        partition=sched.partition,
        default_gres=sched.gres,
        extra_sbatch_args=sched.extra_sbatch_args,
        timeout=sched.timeout_s,
    )


def build_host(name: str, host: HostConfig) -> HostRuntime:
    """Transport + scheduler + remote base of one host."""
    transport = build_transport(name, host)
    return HostRuntime(
        name=name,
        transport=transport,
        scheduler=build_scheduler(host, transport),
        remote_base=host.remote_base,
    )


def build_hosts(config: Config) -> dict[str, HostRuntime]:
    """One runtime per configured host."""
    return {name: build_host(name, host) for name, host in config.hosts.items()}


def build_gpus(config: Config) -> list[GpuRuntime]:
    """One runtime per configured GPU, in config order (claims prefer earlier ones)."""
    return [
        GpuRuntime(
            name=g.name,
            host=g.host,
            binding=GpuBinding(
                name=g.name,
                pueue_group=g.pueue_group,
                slurm_partition=g.slurm_partition,
                slurm_gres=g.slurm_gres,
                cuda_devices=g.cuda_devices,
            ),
        )
        for g in config.gpus
    ]


def build_policy(config: Config) -> Policy:
    """The decision policy (timeouts and retry limits)."""
    eng = config.engine
    return Policy(
        job_timeout=timedelta(seconds=eng.job_timeout_s),
        kill_confirm_window=timedelta(seconds=eng.kill_confirm_s),
        max_attempts=eng.max_attempts,
        max_retrieve_failures=eng.max_retrieve_failures,
        max_local_failures=eng.max_local_failures,
    )


def build_backoff(config: Config) -> Backoff:
    """The per-host backoff schedule."""
    b = config.engine.backoff
    return Backoff(base_s=b.base_s, factor=b.factor, cap_s=b.cap_s)


def build_settings(config: Config, *, exclusive: bool | None = None) -> EngineSettings:
    """Engine settings; ``exclusive`` defaults to True on SQLite (one engine, lock file)."""
    eng = config.engine
    if exclusive is None:
        exclusive = is_sqlite_url(config.database_url)
    return EngineSettings(
        command=tuple(config.command),
        results_dir=config.results_dir,
        results_subdir=eng.results_subdir,
        label_prefix=eng.label_prefix,
        exclusive=exclusive,
        submit_grace=timedelta(seconds=config.takeover_grace_s),
        transfer_timeout_s=eng.transfer_timeout_s,
        lease_ttl_s=eng.lease_ttl_s,
        remote_retention=eng.remote_retention,
        remote_retention_grace_s=eng.remote_retention_grace_s,
    )


def build_engine_parts(
    config: Config, *, store: Store | None = None, hosts: dict[str, HostRuntime] | None = None
) -> EngineParts:
    """Open the store (unless given) and build hosts, GPUs, policy and settings.

    Args:
        config: The validated configuration.
        store: An already open store; otherwise ``Store.open(config.database_url)``.
        hosts: Pre-built host runtimes (tests inject them); otherwise built from config.
    """
    if store is None:
        store = Store.open(config.database_url)
    return EngineParts(
        store=store,
        hosts=hosts if hosts is not None else build_hosts(config),
        gpus=build_gpus(config),
        policy=build_policy(config),
        # Only SQLite has the one-engine lock; anything else may run several engines.
        settings=build_settings(config, exclusive=store.dialect == "sqlite"),
        backoff=build_backoff(config),
    )
