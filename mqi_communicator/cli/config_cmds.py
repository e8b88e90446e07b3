"""``check-config`` (validate a file, start nothing) and ``doctor`` (test every host for real)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import Config, load_config
from ..config.layout import layout_warnings
from ..engine.build import build_transport
from ..textsafe import printable
from .common import config_option, resolve_config
from .doctor_checks import (
    CheckResult,
    any_failed,
    check_database,
    check_host,
    check_legacy_jobs,
    legacy_config_problems,
)
from .output import EXIT_FAILURE, EXIT_USAGE, cli_errors, render_table, to_jsonable

__all__ = ["check_config", "doctor"]


def _load(config_path: Path | None) -> tuple[Path, Config]:
    path = resolve_config(config_path)
    with cli_errors():
        return path, load_config(path)
    raise AssertionError("unreachable")  # pragma: no cover - cli_errors exits


@click.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate a config file without starting anything.

    Exit 0 when valid (warnings, such as a folder that does not exist yet or a host no
    GPU uses, are printed on stderr); exit 2 with each error naming the file, the key
    and what was expected, including folders that overlap (results or a local
    remote_base or the database inside watch_dir, watch_dir inside results_dir) and two
    GPUs on one CUDA device of a host. Example files ship in the package:
    mqi_communicator/examples/*.yaml. When its database already exists, jobs adopted
    from the original system whose Pueue group no configured GPU has (so no host can be
    found for them) are errors too.
    """
    path, cfg = _load(config_path)
    for warning in layout_warnings(cfg):
        click.echo(f"warning: {printable(path)}: {printable(warning)}", err=True)
    legacy = legacy_config_problems(cfg) or []
    for problem in legacy:
        click.echo(f"error: {printable(path)}: {printable(problem)}", err=True)
    if legacy:
        raise SystemExit(EXIT_USAGE)
    click.echo(
        f"{path}: OK ({len(cfg.hosts)} host(s), {len(cfg.gpus)} GPU(s); "
        f"watch {cfg.watch_dir}, results {cfg.results_dir})"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--host", "only", multiple=True, help="Only check this host (repeatable; default: all)."
)
@config_option
def doctor(as_json: bool, only: tuple[str, ...], config_path: Path | None) -> None:
    """Test each configured host for real, and the database.

    Per host: connect (the host key is checked against known_hosts), ask the
    scheduler (pueue status / sinfo / the local setsid), and create and remove a
    directory under remote_base. Prints one row per check; exit 1 if any fails.
    """
    _path, cfg = _load(config_path)
    unknown = [h for h in only if h not in cfg.hosts]
    if unknown:
        raise click.BadParameter(
            f"unknown host(s) {unknown}; configured: {sorted(cfg.hosts)}", param_hint="--host"
        )
    results: list[CheckResult] = [check_database(cfg.database_url)]
    if not results[0].failed:
        results.extend(check_legacy_jobs(cfg))
    for name, host in cfg.hosts.items():
        if only and name not in only:
            continue
        transport = build_transport(name, host)
        try:
            results.extend(check_host(name, host, transport, cfg))
        finally:
            transport.close()
    if as_json:
        click.echo(json.dumps(to_jsonable(results), indent=2, ensure_ascii=False))
    else:
        rows = [[r.host, r.check, r.status, r.reason] for r in results]
        click.echo(render_table(["HOST", "CHECK", "RESULT", "DETAIL"], rows))
    if any_failed(results):
        failed = sum(r.failed for r in results)
        click.echo(f"error: {failed} check(s) failed", err=True)
        raise SystemExit(EXIT_FAILURE)
