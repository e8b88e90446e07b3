"""``mqi-communicator web``: the operator's web console and ``/metrics``.

Starlette, Jinja2 templates and htmx (vendored in ``static/``, no CDN). Everything is
read from the database through the library, so the console runs beside an engine on
SQLite or PostgreSQL and never takes the engine's lock; actions go through the same
library calls as the CLI (:mod:`.actions`).

**Live updates by short polling, not server-sent events.** Each live part of a page
re-fetches its own fragment every ``web.refresh_s`` seconds (htmx ``every``). The
database has no change notification on SQLite, so an SSE stream would have to poll
the database on the server anyway, once per open page, holding a connection and a
worker each; polling from the browser costs the same reads, needs no htmx extension,
survives proxies and restarts without reconnect logic, and a page that was closed
costs nothing.

Security model: see :mod:`.security` (loopback by default, token for anything else,
per-session CSRF, read-only mode).
"""

from .app import create_app

__all__ = ["create_app"]
