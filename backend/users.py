"""Users, roles and password checks (Argon2 hashes; plain passwords are never stored)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import select

from backend.db import read_session, write_session
from backend.models import Role, User
from backend.workspace import Workspace

_hasher = PasswordHasher()


class PermissionDenied(PermissionError):
    """The user's role does not allow this action."""


class UserError(ValueError):
    pass


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def add_user(ws: Workspace, name: str, role: str, password: str) -> User:
    name = name.strip()
    if not name:
        raise UserError("user name must not be empty")
    if role not in {r.value for r in Role}:
        raise UserError(f"unknown role {role!r}; choose one of: admin, annotator")
    if len(password) < 4:
        raise UserError("password must have at least 4 characters")
    with write_session(ws) as s:
        if s.exec(select(User).where(User.name == name)).first():
            raise UserError(f"user {name!r} already exists")
        user = User(name=name, role=role, password_hash=hash_password(password))
        s.add(user)
        s.flush()
        s.refresh(user)
        return user


def get_user(ws: Workspace, name: str) -> User | None:
    with read_session(ws) as s:
        return s.exec(select(User).where(User.name == name)).first()


def list_users(ws: Workspace) -> list[User]:
    with read_session(ws) as s:
        return list(s.exec(select(User).order_by(User.name)))


def verify_login(ws: Workspace, name: str, password: str) -> bool:
    user = get_user(ws, name)
    if user is None or not user.active:
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


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
