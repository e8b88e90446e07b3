"""The checks ``doctor`` runs against each configured host, for real.

Per host: connect (with the configured host-key policy), ask the scheduler, and create
and remove a directory under the remote base. Each check gives one :class:`CheckResult`;
a check whose prerequisite failed is ``SKIP`` with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Config, HostConfig
from ..errors import MqiError
from ..remote.protocol import Transport
from ..remote.quoting import join_argv, quote

__all__ = [
    "CheckResult",
    "any_failed",
    "check_database",
    "check_host",
    "check_legacy_jobs",
    "legacy_config_problems",
]

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"


@dataclass(frozen=True)
class CheckResult:
    """One row of the doctor's report."""

    host: str
    check: str
    status: str
    reason: str

    @property
    def failed(self) -> bool:
        """True for FAIL (a SKIP is caused by an earlier FAIL that already counts)."""
        return self.status == FAIL


def _first_line(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:limit]


def _err(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _where(name: str, host: HostConfig) -> str:
    if host.transport == "local":
        return "local host"
    user = f"{host.user}@" if host.user else ""
    return f"{user}{host.hostname}:{host.port}"


def _connect(name: str, host: HostConfig, transport: Transport) -> CheckResult:
    try:
        result = transport.run(["true"], timeout=host.connect_timeout_s + 10)
    except MqiError as err:
        return CheckResult(name, "connect", FAIL, _err(err))
    if result.exit_code != 0:
        return CheckResult(
            name, "connect", FAIL, f"`true` exited {result.exit_code}: {_first_line(result.stderr)}"
        )
    if host.transport == "local":
        return CheckResult(name, "connect", OK, "local host")
    return CheckResult(name, "connect", OK, f"{_where(name, host)}, host key verified")


def _scheduler(name: str, host: HostConfig, transport: Transport, cfg: Config) -> CheckResult:
    sched = host.scheduler
    timeout = sched.timeout_s
    wanted_groups = sorted({g.pueue_group for g in cfg.gpus if g.host == name and g.pueue_group})
    wanted_parts = sorted(
        {p for g in cfg.gpus if g.host == name for p in (g.slurm_partition,) if p}
        | ({sched.partition} if sched.partition else set())
    )
    try:
        if sched.kind == "local":
            res = transport.run("command -v setsid && command -v sh", timeout=timeout)
            if res.exit_code != 0:
                return CheckResult(name, "scheduler", FAIL, "local: `setsid` not found on PATH")
            return CheckResult(name, "scheduler", OK, "local scheduler (setsid, sh found)")
        if sched.kind == "pueue":
            argv = [*sched.pueue_command, "status", "--json"]
            res = transport.run(argv, timeout=timeout)
            if res.exit_code != 0:
                why = _first_line(res.stderr) or _first_line(res.stdout)
                return CheckResult(
                    name, "scheduler", FAIL, f"`{join_argv(argv)}` exited {res.exit_code}: {why}"
                )
            groups = set(json.loads(res.stdout).get("groups", {}))
            missing = [g for g in wanted_groups if g not in groups]
            if missing:
                return CheckResult(
                    name, "scheduler", FAIL, f"pueue answered but lacks groups {missing}"
                )
            return CheckResult(name, "scheduler", OK, f"pueue answered; groups {sorted(groups)}")
        # Slurm: sinfo asks slurmctld (squeue --version would not).
        argv = ["sinfo", "--noheader", "--format=%R"]
        res = transport.run(argv, timeout=timeout)
        if res.exit_code != 0:
            why = _first_line(res.stderr) or _first_line(res.stdout)
            return CheckResult(name, "scheduler", FAIL, f"`sinfo` exited {res.exit_code}: {why}")
        parts = {ln.strip() for ln in res.stdout.splitlines() if ln.strip()}
        missing = [p for p in wanted_parts if p not in parts]
        if missing:
            return CheckResult(name, "scheduler", FAIL, f"slurm lacks partitions {missing}")
        return CheckResult(name, "scheduler", OK, f"slurmctld answered; partitions {sorted(parts)}")
    except MqiError as err:
        return CheckResult(name, "scheduler", FAIL, _err(err))
    except (ValueError, AttributeError) as err:
        return CheckResult(name, "scheduler", FAIL, f"unreadable scheduler answer: {err}")


def _base_dir(name: str, host: HostConfig, transport: Transport) -> CheckResult:
    base = host.remote_base.rstrip("/") or "/"
    script = (
        f"mkdir -p {quote(base)} && d=$(mktemp -d {quote(base)}/.mqi-doctor.XXXXXX) "
        '&& echo probe > "$d/probe" && rm -rf "$d"'
    )
    try:
        res = transport.run(script, timeout=host.connect_timeout_s + 30)
    except MqiError as err:
        return CheckResult(name, "remote_base writable", FAIL, _err(err))
    if res.exit_code != 0:
        why = _first_line(res.stderr) or f"exit {res.exit_code}"
        return CheckResult(name, "remote_base writable", FAIL, f"{base}: {why}")
    return CheckResult(name, "remote_base writable", OK, base)


def check_host(name: str, host: HostConfig, transport: Transport, cfg: Config) -> list[CheckResult]:
    """Run the three checks against one host; later checks are skipped if connect fails."""
    first = _connect(name, host, transport)
    if first.failed:
        why = "not checked: connect failed"
        return [
            first,
            CheckResult(name, "scheduler", SKIP, why),
            CheckResult(name, "remote_base writable", SKIP, why),
        ]
    return [first, _scheduler(name, host, transport, cfg), _base_dir(name, host, transport)]


def check_database(url: str) -> CheckResult:
    """Open the store: the database is reachable and its schema is at head.

    A SQLite file that does not exist yet is not opened (that would create an empty
    file, which ``run`` would then refuse); ``run`` creates it at the schema head.
    """
    from ..persistence import Store
    from ..persistence.engine_setup import sqlite_file

    db = sqlite_file(url)
    if db is not None and not db.exists():
        return CheckResult("database", "schema at head", OK, f"{db} not created yet; `run` will")
    try:
        Store.open(url).close()
    except MqiError as err:
        return CheckResult("database", "schema at head", FAIL, str(err))
    except Exception as err:  # any driver error is a FAIL row, not a crash
        return CheckResult("database", "schema at head", FAIL, _err(err))
    return CheckResult("database", "schema at head", OK, "reachable, schema current")


def legacy_config_problems(cfg: Config) -> list[str] | None:
    """Legacy jobs whose host this config cannot tell (None: the database cannot be read).

    Opens only an existing database at the schema head; never creates one.
    """
    from ..engine.build import build_gpus
    from ..engine.legacy_jobs import legacy_problems
    from ..persistence import Store
    from ..persistence.engine_setup import sqlite_file

    db = sqlite_file(cfg.database_url)
    if db is not None and not db.exists():
        return []
    try:
        with Store.open(cfg.database_url) as store:
            return legacy_problems(store, build_gpus(cfg))
    except Exception:  # unreachable or not at head: check_database reports it
        return None


def check_legacy_jobs(cfg: Config) -> list[CheckResult]:
    """A FAIL row per job adopted from the original system that has no host in ``cfg``.

    No row at all when every legacy job (usually: none) has one.
    """
    problems = legacy_config_problems(cfg) or []
    return [CheckResult("database", "legacy jobs", FAIL, p) for p in problems]


def any_failed(results: Sequence[CheckResult]) -> bool:
    """True if any check failed."""
    return any(r.failed for r in results)
