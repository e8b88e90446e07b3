"""``service unit [--web]``: a systemd unit for ``run`` (or ``web``) with this interpreter.

The stop timeout is derived from the config: ``run`` stops between steps, so systemd must
wait for the longest step (a transfer, a scheduler command, a hook being stopped) before
it kills. Being killed is safe (the engine is crash-safe), only slower to recover.
"""

from __future__ import annotations

import getpass
import re
import sys
from pathlib import Path

import click

from ..config import Config, load_config
from .common import config_option, resolve_config
from .output import cli_errors

__all__ = ["engine_stop_bound_s", "service", "systemd_quote", "systemd_unit"]

#: Beyond the longest step: closing transports, releasing the lock, flushing the log.
_STOP_MARGIN_S = 30
#: The web app holds no long step.
_WEB_STOP_S = 30
_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def engine_stop_bound_s(config: Config) -> int:
    """Seconds ``run`` may take to stop after SIGTERM: its longest step, plus a margin."""
    scheduler = max(h.scheduler.timeout_s for h in config.hosts.values())
    hooks = max((t.timeout_s for t in config.hooks.targets.values()), default=0.0)
    longest = max(config.engine.transfer_timeout_s, scheduler)
    return int(longest + hooks + _STOP_MARGIN_S + 0.999)


def systemd_quote(arg: str) -> str:
    """One ExecStart word: plain, or double-quoted with systemd's escapes (``%``, ``$``)."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(arg):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(config_path: Path, config: Config, *, web: bool, user: str) -> str:
    """The unit file text for ``run`` (``web=False``) or ``web``."""
    argv = [sys.executable, "-m", "mqi_communicator"]
    argv += (
        ["web", "--config", str(config_path)]
        if web
        else ["run", "--quiet", "--config", str(config_path)]
    )
    what = "web console" if web else "engine"
    stop = _WEB_STOP_S if web else engine_stop_bound_s(config)
    after = "network-online.target"
    if config.database_url.startswith(("postgresql", "postgres")):
        after += " postgresql.service"
    return "\n".join(
        [
            "[Unit]",
            f"Description=MQI Communicator {what}",
            f"After={after}",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"User={user}",
            # A path setting, not a command line: no quotes (spaces are fine), only %.
            f"WorkingDirectory={str(config_path.parent).replace('%', '%%')}",
            "Environment=PYTHONUNBUFFERED=1",
            "ExecStart=" + " ".join(systemd_quote(a) for a in argv),
            "Restart=on-failure",
            "RestartSec=10",
            # SIGTERM to the main process only: it stops between steps. After it exits,
            # what is left in the unit's cgroup gets SIGKILL.
            "KillMode=mixed",
            "KillSignal=SIGTERM",
            f"TimeoutStopSec={stop}",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


@click.group()
def service() -> None:
    """Run the communicator as a system service."""


@service.command("unit")
@click.option("--web", is_flag=True, help="The unit for `web` instead of `run`.")
@click.option("--user", default=None, help="The account it runs as (default: you).")
@config_option
def unit(web: bool, user: str | None, config_path: Path | None) -> None:
    """Print a systemd unit (install: see the README, "Running as a service")."""
    path = resolve_config(config_path).resolve()
    with cli_errors():
        config = load_config(path)
    click.echo(systemd_unit(path, config, web=web, user=user or getpass.getuser()), nl=False)
