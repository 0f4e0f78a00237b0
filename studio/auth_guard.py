"""Require a logged-in session for every route of the studio server except the login page.

Why: Gradio's own ``auth`` guards most routes with a ``login_check`` dependency, but not
all (e.g. queue cancel/reset, heartbeat, streams, run history, monitoring keys). This ASGI
middleware closes that gap with an allowlist: anything not needed to *show the login
page and log in* answers 401 without a valid session cookie, whatever Gradio adds later.
"""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from studio.sessions import SessionPolicy

# What the browser needs before it has a session: the page shell, its static assets,
# the login form's own calls, and logout.
PUBLIC_PATHS = frozenset(
    {
        "/",
        "/login",
        "/login/",
        "/logout",
        "/favicon.ico",
        "/robots.txt",
        "/manifest.json",
        "/theme.css",
        "/gradio_api/theme.css",
        "/config",
        "/config/",
        "/gradio_api/login_check",
        "/gradio_api/login_check/",
        "/gradio_api/app_id",
        "/gradio_api/app_id/",
        # Gradio calls this on itself once at launch; it only runs startup events already queued
        "/gradio_api/startup-events",
    }
)
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def session_token(scope: dict) -> str | None:
    """The request's session token, if it names a live Gradio session."""
    gradio_app = scope.get("app")
    tokens = getattr(gradio_app, "tokens", None)
    cookie_id = getattr(gradio_app, "cookie_id", None)
    if tokens is None or cookie_id is None:
        return None
    raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
    cookie = SimpleCookie()
    try:
        cookie.load(raw)
    except Exception:  # noqa: BLE001 - a malformed cookie header is just "not logged in"
        return None
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        morsel = cookie.get(name)
        if morsel is not None and morsel.value in tokens:
            return morsel.value
    return None


def _session_user(scope: dict) -> str | None:
    token = session_token(scope)
    return None if token is None else scope["app"].tokens.get(token)


class RequireLogin:
    """Pure ASGI middleware: 401 for every non-public request without a valid session.

    ``file_access(user name, path)``, when given, is asked about every file request
    (``…/file=…``) of a logged-in user, in a worker thread since it may read the database;
    False answers 403. The studio passes :class:`studio.access.FileAccess`, which withholds
    stored originals and the images of blind-judged datasets from annotators.
    """

    def __init__(
        self,
        app,  # noqa: ANN001 - ASGI app
        file_access: Callable[[str, str], bool] | None = None,
        sessions: SessionPolicy | None = None,
    ) -> None:
        self.app = app
        self.file_access = file_access
        self.sessions = sessions  # login back-off and session expiry (studio.sessions)

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI signature
        if scope["type"] not in ("http", "websocket") or is_public(scope.get("path", "")):
            if self.sessions is not None:
                if self.sessions.is_login(scope):
                    await self.sessions.login(self.app, scope, receive, send)
                    return
                await self.sessions.screen(scope)  # Gradio's own checks (/config) see an ended session gone
            await self.app(scope, receive, send)
            return
        user = _session_user(scope)
        if user is not None and self.sessions is not None and not await self.sessions.allows(scope, user):
            user = None  # expired, disabled, or the password changed since: log in again
        if user is not None:
            path = scope.get("path", "")
            if (
                self.file_access is not None
                and scope["type"] == "http"
                and "/file=" in path
                and not await anyio.to_thread.run_sync(self.file_access, user, path)
            ):
                await _forbidden(send)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return
        body = b'{"detail": "Not authenticated: log in to RECAP Studio first"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _forbidden(send) -> None:  # noqa: ANN001 - ASGI send
    """403 for a file the logged-in user may not fetch (file routes are plain HTTP GET/HEAD)."""
    body = b'{"detail": "Not allowed: this file is not served to your account"}'
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
