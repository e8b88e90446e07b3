"""Who may see and act: the access token, the session cookie, CSRF, and security headers.

- **Session**: a random id in an ``HttpOnly``, ``SameSite=Strict`` cookie; nothing is
  stored server-side.
- **CSRF**: every form carries ``HMAC(secret, "csrf:" + session)`` (a signed
  double-submit token); a POST whose token does not match its session cookie is refused,
  and so is one whose ``Origin`` names another site. The secret is random per process.
- **Token** (``web.token``): when set, every request but the login page and the static
  files needs ``Authorization: Bearer <token>`` or the login cookie, which holds
  ``HMAC(secret, "auth:" + session)``, never the token itself. The token never appears
  in a page, a URL or a log line (the login form POSTs it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

__all__ = ["AUTH_COOKIE", "SESSION_COOKIE", "Guard", "GuardMiddleware", "same_origin"]

SESSION_COOKIE = "mqi_session"
AUTH_COOKIE = "mqi_auth"
_SESSION_RE = re.compile(r"^[0-9a-f]{64}$")
#: Reachable without the token: the login form and its style sheet.
_OPEN_PATHS = ("/login", "/static/")

_HEADERS = {
    # Only our own script and style: an injected <script> would not run.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on
    # our own form POSTs, which the cross-site check must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Guard:
    """Signs and checks CSRF and login values with a per-process secret.

    Args:
        token: The access token, or None when none is required.
    """

    def __init__(self, token: str | None) -> None:
        self._secret = secrets.token_bytes(32)
        self._token = token

    @property
    def token_required(self) -> bool:
        """True when a token guards every request."""
        return self._token is not None

    def _sign(self, purpose: str, session: str) -> str:
        msg = f"{purpose}:{session}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def csrf_token(self, session: str) -> str:
        """The CSRF token that forms of ``session`` must carry."""
        return self._sign("csrf", session)

    def csrf_ok(self, session: str, given: str) -> bool:
        """True when ``given`` is the CSRF token of ``session``."""
        return hmac.compare_digest(self.csrf_token(session), given)

    def token_ok(self, given: str) -> bool:
        """True when ``given`` is the access token (constant-time)."""
        if self._token is None:
            return True
        return hmac.compare_digest(self._token.encode(), given.encode())

    def login_cookie(self, session: str) -> str:
        """The login cookie's value for ``session`` (not the token)."""
        return self._sign("auth", session)

    def authenticated(self, request: Request, session: str) -> bool:
        """True when no token is required, or the request proves it knows the token."""
        if self._token is None:
            return True
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and self.token_ok(header[len("Bearer ") :]):
            return True
        cookie = request.cookies.get(AUTH_COOKIE, "")
        return hmac.compare_digest(self.login_cookie(session), cookie)


def same_origin(request: Request) -> bool:
    """False when the request's ``Origin`` header names another host (a cross-site POST)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


class GuardMiddleware(BaseHTTPMiddleware):
    """Gives every request a session, enforces the token, adds the security headers."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        super().__init__(app)
        self.guard = guard

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Attach ``request.state.session``; refuse unauthenticated requests."""
        session = request.cookies.get(SESSION_COOKIE, "")
        fresh = not _SESSION_RE.match(session)
        if fresh:
            session = secrets.token_hex(32)
        request.state.session = session
        path = request.url.path
        response: Response
        if path.startswith(_OPEN_PATHS) or self.guard.authenticated(request, session):
            response = await call_next(request)
        elif request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            response = RedirectResponse("/login", status_code=303)
        else:
            response = PlainTextResponse("a valid token is required\n", status_code=401)
        if fresh:
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict")
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)
        return response
