"""Logins with back-off, and sessions that end.

Gradio keeps a session as a token in ``app.tokens`` for as long as the server runs and
calls our ``auth`` function with the name and password only. This module adds what that
lacks, from inside :class:`studio.auth_guard.RequireLogin`:

- the client's address reaches the password check (a context variable set around the
  ``POST /login`` request), so :func:`backend.users.attempt_login` can count failures per
  address as well as per name; a locked login answers 429 with ``Retry-After``;
- each session's login time is noted from the ``Set-Cookie`` of the login response, and a
  session ends (its token is dropped, requests answer 401) once it is older than
  ``max_age``, its user is disabled, or their password changed after it began (``user
  disable`` / ``user passwd`` from the command line reach a running studio this way: the
  user row is re-read every :data:`RECHECK_S` seconds per session).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from fastapi import HTTPException

from backend.models import utcnow
from backend.users import LoginFailed, LoginLocked, attempt_login, get_user
from backend.workspace import Workspace

SESSION_HOURS_ENV = "RECAP_STUDIO_SESSION_HOURS"
DEFAULT_SESSION_HOURS = 12.0
RECHECK_S = 5.0
LOGIN_PATHS = ("/login", "/login/")

_client: ContextVar[str | None] = ContextVar("recap_studio_login_client", default=None)


class SessionSettingError(ValueError):
    """A session length that is not a positive number of hours."""


def session_hours(value: float | None = None) -> float:
    """``--session-hours`` wins, then ``RECAP_STUDIO_SESSION_HOURS``, then 12 hours."""
    if value is None:
        raw = os.environ.get(SESSION_HOURS_ENV)
        if not raw:
            return DEFAULT_SESSION_HOURS
        try:
            value = float(raw)
        except ValueError:
            raise SessionSettingError(f"${SESSION_HOURS_ENV}={raw!r} is not a number of hours") from None
    if not value > 0 or value == float("inf"):
        raise SessionSettingError(f"a session must last a positive number of hours (got {value})")
    return float(value)


def authenticate(ws: Workspace) -> Callable[[str, str], bool]:
    """Gradio's ``auth`` function: throttled password check; a locked login becomes a 429."""

    def check(name: str, password: str) -> bool:
        try:
            attempt_login(ws, name, password, client=_client.get())
        except LoginLocked as exc:
            raise HTTPException(
                status_code=429, detail=str(exc), headers={"Retry-After": str(exc.retry_after_s)}
            ) from None
        except LoginFailed:
            return False
        return True

    return check


def _token(scope: dict[str, Any]) -> str | None:
    from studio.auth_guard import session_token

    return session_token(scope)


@dataclass
class SessionPolicy:
    """Session lifetime and validity for :class:`studio.auth_guard.RequireLogin`."""

    ws: Workspace
    max_age: timedelta
    recheck_s: float = RECHECK_S
    issued: dict[str, datetime] = field(default_factory=dict)  # token -> login time
    checked: dict[str, float] = field(default_factory=dict)  # token -> when its user was last read

    @classmethod
    def hours(cls, ws: Workspace, hours: float | None = None) -> SessionPolicy:
        return cls(ws, timedelta(hours=session_hours(hours)))

    @staticmethod
    def is_login(scope: dict[str, Any]) -> bool:
        return scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") in LOGIN_PATHS

    async def login(self, app: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass a login request on with the client's address known to the password check,
        and note the login time of the session it opens."""
        client = scope.get("client")
        reset = _client.set(client[0] if client else None)
        gradio_app = scope.get("app")
        prefix = f"access-token-{getattr(gradio_app, 'cookie_id', '')}="

        async def noting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                for key, value in message.get("headers", []):
                    text = value.decode("latin-1")
                    if key.lower() == b"set-cookie" and text.startswith(prefix):
                        self.record_login(gradio_app, text[len(prefix) :].split(";", 1)[0])
            await send(message)

        try:
            await app(scope, receive, noting_send)
        finally:
            _client.reset(reset)

    def record_login(self, gradio_app: Any, token: str) -> None:
        tokens = getattr(gradio_app, "tokens", None) or {}
        for old in [t for t in self.issued if t not in tokens]:  # logged out meanwhile
            self.issued.pop(old, None)
            self.checked.pop(old, None)
        self.issued[token] = utcnow()

    def revoke(self, scope: dict[str, Any], token: str) -> None:
        tokens = getattr(scope.get("app"), "tokens", None)
        if tokens is not None:
            tokens.pop(token, None)
        self.issued.pop(token, None)
        self.checked.pop(token, None)

    def _user_allows(self, name: str, since: datetime) -> bool:
        user = get_user(self.ws, name)
        if user is None or not user.active:
            return False
        return user.password_changed_at is None or user.password_changed_at <= since

    async def screen(self, scope: dict[str, Any]) -> None:
        """Drop the request's session if it has ended (for public routes that Gradio guards itself)."""
        if scope["type"] not in ("http", "websocket"):
            return
        token = _token(scope)
        if token is not None:
            await self.allows(scope, scope["app"].tokens[token])

    async def allows(self, scope: dict[str, Any], user: str) -> bool:
        """Is the session of this request still valid? An ended one is dropped for good."""
        token = _token(scope)
        if token is None:
            return False
        now = utcnow()
        since = self.issued.setdefault(token, now)  # a session from before this policy: from now
        if now - since >= self.max_age:
            self.revoke(scope, token)
            return False
        last = self.checked.get(token)
        if last is None or time.monotonic() - last >= self.recheck_s:
            if not await anyio.to_thread.run_sync(self._user_allows, user, since):
                self.revoke(scope, token)
                return False
            self.checked[token] = time.monotonic()
        return True
