"""``web``: serve the web console and ``/metrics``."""

from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path

import click

from ..config import WebConfig, load_config
from .common import config_option, open_communicator, resolve_config
from .output import EXIT_USAGE, cli_errors, fail

__all__ = ["is_loopback", "web"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


@click.command("web")
@click.option("--host", default=None, help="Listen address (default: web.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: web.port, 8350).")
@click.option("--read-only", is_flag=True, default=False, help="Disable every action.")
@config_option
def web(host: str | None, port: int | None, read_only: bool, config_path: Path | None) -> None:
    """Serve the web console (overview, cases, GPUs, actions) and /metrics.

    Binds 127.0.0.1 unless told otherwise; any other address requires web.token
    (or MQI__WEB__TOKEN), which then guards every request.
    """
    import uvicorn  # heavy: only this command needs it

    from ..web import create_app

    with cli_errors():
        configured = load_config(resolve_config(config_path)).web
    settings = _settings(configured, host, port, read_only)
    if not is_loopback(settings.host) and settings.token is None:
        fail(
            f"refusing to listen on {settings.host} without a token: set web.token "
            "(or MQI__WEB__TOKEN), or listen on 127.0.0.1",
            EXIT_USAGE,
        )
    mode = "read-only" if settings.read_only else "actions enabled"
    guard = "token required" if settings.token is not None else "no token"
    # Like every other command, a SQLite database that does not exist yet is created
    # at the schema head, so the web unit may start before the engine's.
    with open_communicator(config_path) as comm:
        app = create_app(comm, settings)
        # The first aggregation of a long audit trail takes seconds: do it before the
        # first scrape asks (see web/metrics.py).
        threading.Thread(target=app.state.console.source.warm, daemon=True).start()
        logging.getLogger("mqi_communicator.web").info(
            "web console on http://%s:%d (%s, %s)", settings.host, settings.port, mode, guard
        )
        click.echo(f"web console: http://{settings.host}:{settings.port}/ ({mode}, {guard})")
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")


def _settings(web: WebConfig, host: str | None, port: int | None, read_only: bool) -> WebConfig:
    """The config's ``web:`` section with the command-line options applied."""
    updates: dict[str, object] = {"read_only": web.read_only or read_only}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    return web.model_copy(update=updates)
