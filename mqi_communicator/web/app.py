"""The web console's routes: pages, their live fragments, actions, login and ``/metrics``.

Reads go through the library (:class:`~mqi_communicator.service.Communicator` and its
store); actions through :mod:`.actions`. Handlers are plain functions, which Starlette
runs in its thread pool, so a slow database read never blocks the event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..config import WebConfig
from ..display import evidence_text, fmt_time, held_back
from ..errors import MqiError, NotFoundError
from ..service import Communicator
from ..statemachine import CaseState
from ..textsafe import printable
from ..zombie_release import release_checks
from . import views
from .actions import ACTIONS, Action, ActionInput, offered
from .metrics import MetricsSource, render_metrics
from .security import AUTH_COOKIE, Guard, GuardMiddleware, same_origin

__all__ = ["create_app"]

_HERE = Path(__file__).parent
#: An operator's reason is cut to this many characters (it is stored and logged).
_MAX_REASON = 500


def _templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True),
    )
    env.filters["t"] = fmt_time
    env.filters["evidence"] = evidence_text
    # Names from the watch folder: control characters shown as escapes (HTML escaping
    # alone would hand them to the browser).
    env.filters["p"] = printable
    return Jinja2Templates(env=env)


class _Console:
    """The handlers, sharing one communicator, guard and templates."""

    def __init__(self, comm: Communicator, web: WebConfig, guard: Guard) -> None:
        self.comm = comm
        self.web = web
        self.guard = guard
        self.templates = _templates()
        self.source = MetricsSource(comm.store, comm.reconciler.clock, list(comm.config.hosts))

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        ctx.update(
            csrf=self.guard.csrf_token(request.state.session),
            read_only=self.web.read_only,
            refresh_ms=int(self.web.refresh_s * 1000),
            token_required=self.guard.token_required,
        )
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    # -- pages and their live fragments --------------------------------------------------

    def overview(self, request: Request) -> Response:
        page = "_overview.html" if request.url.path.startswith("/fragments") else "overview.html"
        return self.render(request, page, o=views.overview(self.comm))

    def cases(self, request: Request) -> Response:
        q = request.query_params
        state = _state(q.get("state", ""))
        search = q.get("q", "").strip()[:200]
        before = _int(q.get("before", ""))
        page = views.cases_page(self.comm, state, search, before)
        query = {"state": state.value if state else "", "q": search}
        if before is not None:
            query["before"] = str(before)
        name = "_cases.html" if request.url.path.startswith("/fragments") else "cases.html"
        return self.render(request, name, p=page, query=query, states=list(CaseState))

    def case(self, request: Request) -> Response:
        case_id: int = request.path_params["case_id"]
        case = self.comm.case(case_id)
        now = self.comm.reconciler.clock()
        history = self.comm.history(case_id=case_id)
        name = "_case.html" if request.url.path.startswith("/fragments") else "case.html"
        return self.render(
            request,
            name,
            c=case,
            held=held_back(case, now),
            now=now,
            history=history,
            attempts=views.attempts(history),
            results=views.result_files(self.comm.config.results_dir, case.name, case.id),
            actions=[] if self.web.read_only else offered("case", case),
        )

    def case_log(self, request: Request) -> Response:
        case = self.comm.case(request.path_params["case_id"])
        return self.render(request, "_log.html", log=views.job_log(self.comm, case))

    def gpu(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        gpu = self.comm.store.get_gpu(name)
        held = gpu.quarantined_case_id or gpu.case_id
        page = "_gpu.html" if request.url.path.startswith("/fragments") else "gpu.html"
        return self.render(
            request,
            page,
            g=gpu,
            held=self.comm.case(held) if held is not None else None,
            history=self.comm.history(gpu_name=name, limit=200)[::-1],
            actions=[] if self.web.read_only else offered("gpu", gpu),
        )

    def metrics(self, request: Request) -> Response:
        del request
        return Response(render_metrics(self.source), media_type="text/plain; version=0.0.4")

    # -- actions ---------------------------------------------------------------------------

    def _action(self, request: Request) -> tuple[Action, str]:
        if self.web.read_only:
            raise HTTPException(403, "read-only mode: actions are disabled")
        target: str = request.path_params["target"]
        action = ACTIONS.get((target, request.path_params["action"]))
        if action is None:
            raise HTTPException(404, "no such action")
        return action, request.path_params["key"]

    def confirm(self, request: Request) -> Response:
        action, key = self._action(request)
        checks: list[str] = []
        if action.target == "case":
            if not key.isdigit():
                raise NotFoundError(f"no case with id {key!r}")
            what = self.comm.case(int(key)).name
        else:
            gpu = self.comm.store.get_gpu(key)
            what = gpu.status.value
            if action.attested:
                checks = release_checks(gpu)
        return self.render(
            request,
            "confirm.html",
            a=action,
            key=key,
            what=what,
            checks=checks,
            back=_back(action, key),
        )

    async def act(self, request: Request) -> Response:
        action, key = self._action(request)
        form = await request.form()
        token = form.get("csrf")
        if not same_origin(request) or not isinstance(token, str):
            raise HTTPException(403, "cross-site request refused")
        if not self.guard.csrf_ok(request.state.session, token):
            raise HTTPException(403, "stale or missing form token; reload the page and retry")
        reason, job_gone = form.get("reason", ""), form.get("job_gone", "")
        given = ActionInput(
            actor=_actor(request),
            # One line, bounded: it goes into the audit row and the log.
            reason=" ".join(reason.split())[:_MAX_REASON] if isinstance(reason, str) else "",
            job_gone=job_gone == "yes",
        )
        try:
            message = await run_in_threadpool(action.run, self.comm, key, given)
            ok, status = True, 200
        except (MqiError, ValueError) as err:
            message, ok, status = f"refused: {err}", False, 409
        return self.render(
            request,
            "result.html",
            status,
            a=action,
            ok=ok,
            message=message,
            back=_back(action, key),
        )

    # -- login -----------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.render(request, "login.html", wrong=False)
        form = await request.form()
        csrf, token = form.get("csrf"), form.get("token")
        session = request.state.session
        if not isinstance(csrf, str) or not self.guard.csrf_ok(session, csrf):
            raise HTTPException(403, "stale form; reload the login page")
        if not isinstance(token, str) or not self.guard.token_ok(token):
            return self.render(request, "login.html", 401, wrong=True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            AUTH_COOKIE, self.guard.login_cookie(session), httponly=True, samesite="strict"
        )
        return response


def _state(text: str) -> CaseState | None:
    try:
        return CaseState(text) if text else None
    except ValueError:
        return None


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 19 else None


def _actor(request: Request) -> str:
    """Who acts, for the audit trail: this console and the client's address."""
    client = request.client.host if request.client is not None else "unknown"
    return f"web:{client}"


def _back(action: Action, key: str) -> str:
    return f"/cases/{key}" if action.target == "case" else f"/gpus/{key}"


def _error_page(request: Request, exc: Exception) -> Response:
    status, text = 500, "internal error"
    if isinstance(exc, HTTPException):
        status, text = exc.status_code, exc.detail
    elif isinstance(exc, NotFoundError):
        status, text = 404, str(exc)
    console: _Console = request.app.state.console
    return console.render(request, "error.html", status, code=status, text=text)


def create_app(comm: Communicator, web: WebConfig | None = None) -> Starlette:
    """The web console over ``comm`` (which it reads and acts through, never ticks).

    Args:
        comm: An open communicator (``watch=False``); the caller closes it.
        web: Listen/security settings; default ``comm.config.web``.
    """
    settings = web if web is not None else comm.config.web
    token = settings.token.get_secret_value() if settings.token is not None else None
    guard = Guard(token)
    c = _Console(comm, settings, guard)
    act_path = "/act/{target:str}/{action:str}/{key:path}"
    routes = [
        Route("/", c.overview),
        Route("/fragments/overview", c.overview),
        Route("/cases", c.cases),
        Route("/fragments/cases", c.cases),
        Route("/cases/{case_id:int}", c.case),
        Route("/fragments/case/{case_id:int}", c.case),
        Route("/cases/{case_id:int}/log", c.case_log),
        Route("/gpus/{name:path}", c.gpu),
        Route("/fragments/gpu/{name:path}", c.gpu),
        Route(act_path, c.confirm, methods=["GET"]),
        Route(act_path, c.act, methods=["POST"]),
        Route("/login", c.login, methods=["GET", "POST"]),
        Route("/metrics", c.metrics),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, guard=guard)],
        exception_handlers={HTTPException: _error_page, NotFoundError: _error_page},
    )
    app.state.console = c
    return app
