"""Users, roles, password checks and login throttling (Argon2 hashes; plain passwords are never stored).

Three rules against guessing, each with its reason:

- **The same cost for every name.** An unknown or disabled user's password is checked
  against a dummy Argon2 hash, so the answer takes as long as for a real account (before,
  5 ms against 190 ms told anyone which user names exist).
- **Back-off after failures.** :func:`attempt_login` counts consecutive failures per user
  name and per client address in the database (a restart does not reset them). Past
  :data:`FREE_FAILURES_PER_USER` (or :data:`FREE_FAILURES_PER_CLIENT`) the name (or the
  address) is locked for :data:`LOCK_BASE_S` seconds, doubling with every further failure up
  to :data:`LOCK_MAX_S`; while locked, logins are refused without looking at the password,
  so a lock cannot be raced. Unknown names are counted and locked exactly like real ones
  (nothing to enumerate); a success clears the name's count. Failures are forgotten after
  :data:`FAILURE_MEMORY` without a new one.
- **Long passwords.** New and changed passwords have at least :data:`MIN_PASSWORD_LENGTH`
  characters.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, delete, select

from backend.db import read_session, write_session
from backend.models import LoginThrottle, Role, User, utcnow
from backend.workspace import Workspace

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 12
FREE_FAILURES_PER_USER = 5  # consecutive failed logins of one name before it is locked
FREE_FAILURES_PER_CLIENT = 20  # ... of one client address, over all names (password spraying)
LOCK_BASE_S = 30.0  # the first lock; each further failure doubles it
LOCK_MAX_S = 15 * 60.0
FAILURE_MEMORY = timedelta(minutes=30)  # a count with no new failure for this long starts again
USER_SCOPE, CLIENT_SCOPE = "user", "client"


class PermissionDenied(PermissionError):
    """The user's role does not allow this action."""


class UserError(ValueError):
    pass


class LoginFailed(Exception):  # noqa: N818 - an outcome, like PermissionDenied
    """Wrong name or password (the message never says which)."""


class LoginLocked(LoginFailed):
    """Too many failed logins for this name or from this address: wait ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, int(retry_after_s + 0.999))
        super().__init__(
            f"too many failed logins for this account or from this address; "
            f"try again in {self.retry_after_s} s"
        )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_rule(password: str) -> None:
    """Refuse a password that is too short for a new login (UserError with the rule)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must have at least {MIN_PASSWORD_LENGTH} characters (got {len(password)})")


def add_user(ws: Workspace, name: str, role: str, password: str) -> User:
    name = name.strip()
    if not name:
        raise UserError("user name must not be empty")
    if role not in {r.value for r in Role}:
        raise UserError(f"unknown role {role!r}; choose one of: admin, annotator")
    check_password_rule(password)
    with write_session(ws) as s:
        if s.exec(select(User).where(User.name == name)).first():
            raise UserError(f"user {name!r} already exists")
        user = User(name=name, role=role, password_hash=hash_password(password))
        s.add(user)
        s.flush()
        s.refresh(user)
        return user


def _existing(s: Session, name: str) -> User:
    user = s.exec(select(User).where(User.name == name)).first()
    if user is None:
        raise UserError(f"no user named {name!r}")
    return user


def set_password(ws: Workspace, name: str, password: str) -> User:
    """Change a user's password: sessions opened before now end, and any lock on the name is lifted."""
    check_password_rule(password)
    password_hash = hash_password(password)  # outside the write lock: Argon2 is slow on purpose
    with write_session(ws) as s:
        user = _existing(s, name)
        user.password_hash = password_hash
        user.password_changed_at = utcnow()
        s.add(user)
        _clear(s, USER_SCOPE, name)
        s.flush()
        return user


def set_active(ws: Workspace, name: str, active: bool) -> User:
    """Disable (no login, open sessions end) or enable a user; their captions and votes stay."""
    with write_session(ws) as s:
        user = _existing(s, name)
        user.active = active
        s.add(user)
        if active:
            _clear(s, USER_SCOPE, name)
        s.flush()
        return user


def unlock(ws: Workspace, name: str) -> bool:
    """Lift a lock on a user name (and forget its failures); True if there was one."""
    with write_session(ws) as s:
        return _clear(s, USER_SCOPE, name)


def get_user(ws: Workspace, name: str) -> User | None:
    with read_session(ws) as s:
        return s.exec(select(User).where(User.name == name)).first()


def list_users(ws: Workspace) -> list[User]:
    with read_session(ws) as s:
        return list(s.exec(select(User).order_by(User.name)))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """An Argon2 hash of a random secret, made with the same parameters as real ones."""
    return _hasher.hash(secrets.token_urlsafe(24))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_login(ws: Workspace, name: str, password: str) -> bool:
    """Does this name and password open a session? (No throttling: see :func:`attempt_login`.)

    Unknown and disabled users cost one Argon2 verification like everyone else.
    """
    user = get_user(ws, name)
    if user is None or not user.active:
        _verify(_dummy_hash(), password)
        return False
    return _verify(user.password_hash, password)


# --------------------------------------------------------------------------- throttling


@dataclass(frozen=True)
class Lock:
    """A name or address that is locked now, and until when."""

    scope: str
    key: str
    failures: int
    locked_until: datetime


def _clear(s: Session, scope: str, key: str) -> bool:
    result = s.exec(delete(LoginThrottle).where(LoginThrottle.scope == scope, LoginThrottle.key == key))
    return bool(result.rowcount)


def _keys(name: str, client: str | None) -> list[tuple[str, str]]:
    keys = [(USER_SCOPE, name)]
    if client:
        keys.append((CLIENT_SCOPE, client))
    return keys


def _free_failures(scope: str) -> int:
    return FREE_FAILURES_PER_USER if scope == USER_SCOPE else FREE_FAILURES_PER_CLIENT


def lock_seconds(failures: int, free: int) -> float:
    """How long ``failures`` consecutive failures lock a key that may fail ``free`` times."""
    if failures < free:
        return 0.0
    return min(LOCK_MAX_S, LOCK_BASE_S * 2.0 ** min(failures - free, 32))


def active_locks(
    ws: Workspace, name: str, client: str | None = None, *, now: datetime | None = None
) -> list[Lock]:
    """The locks that refuse a login of ``name`` from ``client`` at ``now``."""
    now = now or utcnow()
    locks = []
    with read_session(ws) as s:
        for scope, key in _keys(name, client):
            row = s.exec(
                select(LoginThrottle).where(LoginThrottle.scope == scope, LoginThrottle.key == key)
            ).first()
            if row is not None and row.locked_until is not None and row.locked_until > now:
                locks.append(Lock(scope, key, row.failures, row.locked_until))
    return locks


def locked_names(ws: Workspace, *, now: datetime | None = None) -> dict[str, datetime]:
    """User names locked now, with the end of their lock (for ``user list``)."""
    now = now or utcnow()
    with read_session(ws) as s:
        rows = s.exec(
            select(LoginThrottle).where(
                LoginThrottle.scope == USER_SCOPE, col(LoginThrottle.locked_until) > now
            )
        ).all()
    return {row.key: row.locked_until for row in rows if row.locked_until is not None}


def _record_failure(ws: Workspace, name: str, client: str | None, now: datetime) -> None:
    with write_session(ws) as s:
        # forget what is old and unlocked, so guessed names do not pile up
        s.exec(
            delete(LoginThrottle).where(
                col(LoginThrottle.last_failure_at) < now - FAILURE_MEMORY,
                (col(LoginThrottle.locked_until).is_(None)) | (col(LoginThrottle.locked_until) < now),
            )
        )
        for scope, key in _keys(name, client):
            row = s.exec(
                select(LoginThrottle).where(LoginThrottle.scope == scope, LoginThrottle.key == key)
            ).first()
            if row is None:
                row = LoginThrottle(scope=scope, key=key, failures=0)
            row.failures += 1
            row.last_failure_at = now
            seconds = lock_seconds(row.failures, _free_failures(scope))
            row.locked_until = now + timedelta(seconds=seconds) if seconds else None
            s.add(row)


def attempt_login(
    ws: Workspace, name: str, password: str, *, client: str | None = None, now: datetime | None = None
) -> User:
    """A login with back-off: the user, or :class:`LoginLocked` / :class:`LoginFailed`.

    ``client`` is the caller's address (None: count the name only). ``now`` is for tests,
    which check the lock's state, not the passing of time.
    """
    now = now or utcnow()
    locks = active_locks(ws, name, client, now=now)
    if locks:
        raise LoginLocked(max((lock.locked_until - now).total_seconds() for lock in locks))
    if verify_login(ws, name, password):
        with write_session(ws) as s:
            _clear(s, USER_SCOPE, name)
        user = get_user(ws, name)
        if user is not None:
            return user
    _record_failure(ws, name, client, now)
    raise LoginFailed("wrong user name or password")


def require_role(ws: Workspace, name: str | None, *roles: str) -> User:
    """The named user if their role is one of ``roles``; otherwise :class:`PermissionDenied`."""
    user = get_user(ws, name) if name else None
    if user is None or not user.active:
        raise PermissionDenied("you are not logged in")
    if user.role not in roles:
        raise PermissionDenied(f"role '{user.role}' may not do this (needs {' or '.join(roles)})")
    return user


def require_admin(ws: Workspace, name: str | None) -> User:
    return require_role(ws, name, Role.admin.value)
