"""Login is required for every page and API route; passwords are hashed; roles exist.

Runs against the real studio server (subprocess) over HTTP. The route list comes from
the same Gradio app the server builds, so a route Gradio adds in a later version is
covered automatically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Literal

import httpx
import pytest
from argon2 import PasswordHasher
from sqlmodel import delete

from backend import users
from backend.db import write_session
from backend.models import LoginThrottle
from backend.users import get_user, verify_login
from backend.workspace import Workspace
from studio.auth_guard import is_public
from studio.sessions import SessionPolicy
from tests.conftest import ADMIN, ANNOTATOR, Studio, environment, run_cli, start_studio, stop_studio, wait_for


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """The demo studio of conftest, started with a 1 MB upload limit (the test of it stays small)."""
    with environment(RECAP_STUDIO_MAX_UPLOAD_MB="1"):
        server = start_studio(tmp_path_factory.mktemp("studio") / "home")
    yield server
    stop_studio(server)


def _all_routes(studio: Studio) -> list[tuple[str, str]]:
    import gradio as gr
    from gradio.routes import App

    from studio.app import build_app

    blocks = build_app(studio.ws)
    blocks.auth = lambda _u, _p: False
    app = App.create_app(blocks)
    found: list[tuple[str, str]] = []

    def walk(routes, prefix: str = "") -> None:  # noqa: ANN001
        for route in routes:
            if hasattr(route, "path"):
                for method in sorted(getattr(route, "methods", None) or {"GET"}):
                    if method != "HEAD":
                        found.append((method, prefix + route.path))
            elif hasattr(route, "original_router"):
                walk(
                    route.original_router.routes,
                    prefix + (getattr(route.include_context, "prefix", "") or ""),
                )

    walk(app.routes)
    assert isinstance(blocks, gr.Blocks)
    return found


def _concrete(path: str) -> str:
    """Fill path parameters with harmless values."""
    return re.sub(r"\{[^}]+\}", "x", path)


def _login(client: httpx.Client, user: tuple[str, str]) -> None:
    response = client.post("/login", data={"username": user[0], "password": user[1]})
    assert response.status_code == 200, response.text


def test_every_non_public_route_requires_login(studio: Studio) -> None:
    routes = _all_routes(studio)
    assert len(routes) > 40  # sanity: we really enumerated Gradio's routes
    checked = 0
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        for method, path in routes:
            if is_public(path):
                continue
            response = client.request(method, _concrete(path))
            assert response.status_code == 401, (
                f"{method} {path} answered {response.status_code} without login"
            )
            checked += 1
    assert checked > 30


def test_public_routes_reveal_nothing_without_login(studio: Studio) -> None:
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        config = client.get("/config")
        assert config.status_code == 401  # Gradio's own check: the app layout stays private
        assert client.get("/gradio_api/login_check").status_code == 401
        assert client.get("/gradio_api/info").status_code == 401
        page = client.get("/")
        assert page.status_code == 200
        assert "demo-shapes" not in page.text


def test_images_need_login_and_logged_in_user_gets_them(studio: Studio) -> None:
    thumb = next(studio.ws.thumbs_dir.rglob("*.jpg"))
    url = f"/gradio_api/file={thumb}"
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        assert client.get(url).status_code == 401
        _login(client, ANNOTATOR)
        response = client.get(url)
        assert response.status_code == 200
        assert response.content[:2] == b"\xff\xd8"  # a JPEG thumbnail


def test_wrong_password_is_refused(studio: Studio) -> None:
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        response = client.post("/login", data={"username": ADMIN[0], "password": "wrong"})
        assert response.status_code >= 400
        assert client.get("/config").status_code == 401
        _login(client, ADMIN)
        assert client.get("/config").status_code == 200
        client.get("/logout")
        assert client.get("/config").status_code == 401


def test_user_add_cli_stores_only_a_hash(tmp_path) -> None:  # noqa: ANN001
    home = tmp_path / "home"
    result = run_cli(
        home, "user", "add", "carol", "--role", "annotator", "--password-stdin", stdin="s3cret-passphrase\n"
    )
    assert result.returncode == 0, result.stderr
    ws = Workspace(home)
    user = get_user(ws, "carol")
    assert user is not None and user.role == "annotator"
    assert "s3cret-passphrase" not in user.password_hash and user.password_hash.startswith("$argon2")
    assert verify_login(ws, "carol", "s3cret-passphrase") and not verify_login(ws, "carol", "nope")
    assert b"s3cret-passphrase" not in (home / "studio.db").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dave", "--role", "superuser"], "unknown role"),
        (["carol", "--role", "admin"], "already exists"),
    ],
)
def test_user_add_cli_refuses_bad_input(tmp_path, args: list[str], message: str) -> None:  # noqa: ANN001
    home = tmp_path / "home"
    run_cli(home, "user", "add", "carol", "--password-stdin", stdin="pw-123456789\n")
    result = run_cli(home, "user", "add", *args, "--password-stdin", stdin="pw-123456789\n")
    assert result.returncode == 2
    assert message in result.stderr


# --------------------------------------------------------------------------- login hardening (issue 9, section 6)


class CountingHasher(PasswordHasher):
    """The real Argon2 hasher, counting verifications (how long they take is the bench's job)."""

    def __init__(self) -> None:
        super().__init__()
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:  # noqa: A002 - argon2's name
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    hasher = CountingHasher()
    monkeypatch.setattr(users, "_hasher", hasher)
    return hasher


def test_unknown_and_disabled_users_cost_one_argon2_verification_like_real_ones(
    ws: Workspace, counting: CountingHasher
) -> None:
    """Before, an unknown name answered without hashing (5 ms against 190 ms): names could be listed."""
    users.add_user(ws, "carol", "annotator", "carol-password")
    users.add_user(ws, "dave", "annotator", "dave-password")
    users.set_active(ws, "dave", False)
    counting.verified = 0
    assert users.verify_login(ws, "carol", "carol-password") and counting.verified == 1
    assert not users.verify_login(ws, "carol", "wrong-password") and counting.verified == 2
    assert not users.verify_login(ws, "nobody", "any-password") and counting.verified == 3
    assert not users.verify_login(ws, "dave", "dave-password") and counting.verified == 4


def _outcomes(
    ws: Workspace, name: str, password: str, n: int, now: datetime, client: str | None = None
) -> list[str]:
    seen = []
    for _ in range(n):
        try:
            users.attempt_login(ws, name, password, client=client, now=now)
            seen.append("ok")
        except users.LoginLocked:
            seen.append("locked")
        except users.LoginFailed:
            seen.append("wrong")
    return seen


def test_25_wrong_passwords_lock_the_name_and_then_the_right_one_is_refused(
    ws: Workspace, counting: CountingHasher
) -> None:
    """Before, the 26th try with the right password logged in at full speed."""
    users.add_user(ws, "carol", "annotator", "carol-password")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    counting.verified = 0
    free = users.FREE_FAILURES_PER_USER
    assert _outcomes(ws, "carol", "guess-password", 25, now) == ["wrong"] * free + ["locked"] * (25 - free)
    assert counting.verified == free  # a locked name is refused before any password is looked at
    with pytest.raises(users.LoginLocked) as locked:
        users.attempt_login(ws, "carol", "carol-password", now=now)
    assert locked.value.retry_after_s == users.LOCK_BASE_S
    (lock,) = users.active_locks(ws, "carol", now=now)
    assert lock.failures == free and lock.locked_until == now + timedelta(seconds=users.LOCK_BASE_S)

    # the lock ends; one more failure locks again, twice as long
    later = lock.locked_until + timedelta(seconds=1)
    assert _outcomes(ws, "carol", "guess-password", 1, later) == ["wrong"]
    (lock,) = users.active_locks(ws, "carol", now=later)
    assert lock.locked_until == later + timedelta(seconds=2 * users.LOCK_BASE_S)
    # the right password once the lock is over logs in and clears the count
    after = lock.locked_until + timedelta(seconds=1)
    assert users.attempt_login(ws, "carol", "carol-password", now=after).name == "carol"
    assert users.active_locks(ws, "carol", now=after) == []
    assert _outcomes(ws, "carol", "guess-password", 1, after) == ["wrong"]  # a fresh count


def test_unknown_names_are_locked_exactly_like_real_ones(ws: Workspace) -> None:
    users.add_user(ws, "carol", "annotator", "carol-password")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    real = _outcomes(ws, "carol", "guess-password", 8, now)
    unknown = _outcomes(ws, "nobody", "guess-password", 8, now)
    assert real == unknown  # nothing to tell a real name from a made-up one


def test_one_address_guessing_many_names_is_locked_out(ws: Workspace) -> None:
    users.add_user(ws, "carol", "annotator", "carol-password")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    sprayed = [_outcomes(ws, f"user{i}", "password-1234", 1, now, client="10.0.0.9")[0] for i in range(25)]
    free = users.FREE_FAILURES_PER_CLIENT
    assert sprayed == ["wrong"] * free + ["locked"] * (25 - free)
    with pytest.raises(users.LoginLocked):
        users.attempt_login(ws, "carol", "carol-password", client="10.0.0.9", now=now)
    # the lock is on that address only; carol's own count is untouched
    assert users.attempt_login(ws, "carol", "carol-password", client="10.0.0.7", now=now).name == "carol"


def test_lock_is_kept_in_the_database_and_listed_by_the_cli(ws: Workspace) -> None:
    """Another process (a restarted studio, the CLI) sees the lock; `user unlock` lifts it."""
    users.add_user(ws, "carol", "annotator", "carol-password")
    # failures "an hour from now": the lock is still on whenever the CLI below gets to look
    _outcomes(
        ws, "carol", "guess-password", users.FREE_FAILURES_PER_USER, users.utcnow() + timedelta(hours=1)
    )
    listed = run_cli(ws.home, "user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    carol = next(u for u in json.loads(listed.stdout) if u["name"] == "carol")
    assert carol["locked_until"] is not None and carol["active"] is True
    unlocked = run_cli(ws.home, "user", "unlock", "carol")
    assert unlocked.returncode == 0 and "lifted" in unlocked.stdout
    assert users.attempt_login(ws, "carol", "carol-password").name == "carol"


@pytest.mark.parametrize("password", ["", "short", "eleven-char"])
def test_new_passwords_need_at_least_12_characters(tmp_path, password: str) -> None:  # noqa: ANN001
    home = tmp_path / "home"
    result = run_cli(home, "user", "add", "carol", "--password-stdin", stdin=f"{password}\n")
    assert result.returncode == 2
    assert f"password must have at least 12 characters (got {len(password)})" in result.stderr
    assert get_user(Workspace(home), "carol") is None


def test_user_passwd_disable_enable_and_list_from_the_cli(tmp_path) -> None:  # noqa: ANN001
    home = tmp_path / "home"
    assert run_cli(home, "user", "add", "carol", "--password-stdin", stdin="first-password\n").returncode == 0
    ws = Workspace(home)

    changed = run_cli(home, "user", "passwd", "carol", "--password-stdin", stdin="second-password\n")
    assert changed.returncode == 0, changed.stderr
    assert verify_login(ws, "carol", "second-password") and not verify_login(ws, "carol", "first-password")
    assert get_user(ws, "carol").password_changed_at is not None  # older sessions end
    short = run_cli(home, "user", "passwd", "carol", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    assert verify_login(ws, "carol", "second-password")  # unchanged
    missing = run_cli(home, "user", "passwd", "nobody", "--password-stdin", stdin="third-password\n")
    assert missing.returncode == 2 and "no user named 'nobody'" in missing.stderr

    assert run_cli(home, "user", "disable", "carol").returncode == 0
    assert not verify_login(ws, "carol", "second-password")
    listed = json.loads(run_cli(home, "user", "list", "--json").stdout)
    assert listed == [{"name": "carol", "role": "annotator", "active": False, "locked_until": None}]
    assert run_cli(home, "user", "enable", "carol").returncode == 0
    assert verify_login(ws, "carol", "second-password")
    table = run_cli(home, "user", "list")
    assert table.returncode == 0 and "carol" in table.stdout and "annotator" in table.stdout


def test_back_off_over_http_refuses_the_right_password_after_25_wrong_ones(studio: Studio) -> None:
    users.add_user(studio.ws, "victim", "annotator", "victim-password")
    free = users.FREE_FAILURES_PER_USER
    try:
        with httpx.Client(base_url=studio.url, timeout=60) as client:
            for name in ("victim", "no-such-user"):  # a made-up name answers exactly the same
                codes = [
                    client.post("/login", data={"username": name, "password": "guess-password"}).status_code
                    for _ in range(25)
                ]
                assert codes == [400] * free + [429] * (25 - free), name
            refused = client.post("/login", data={"username": "victim", "password": "victim-password"})
            assert refused.status_code == 429 and "too many failed logins" in refused.text
            assert int(refused.headers["retry-after"]) > 0
            assert client.get("/config").status_code == 401  # no session was opened
    finally:
        with write_session(studio.ws) as s:  # the other tests of this module log in from here too
            s.exec(delete(LoginThrottle))


def test_disabling_a_user_ends_their_open_session(studio: Studio) -> None:
    users.add_user(studio.ws, "dora", "annotator", "dora-password")
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        _login(client, ("dora", "dora-password"))
        assert client.get("/config").status_code == 200
        result = run_cli(studio.home, "user", "disable", "dora")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: client.get("/config").status_code == 401, 60, what="the session to end")
        assert (
            client.post("/login", data={"username": "dora", "password": "dora-password"}).status_code == 400
        )


def test_sessions_expire(tmp_path) -> None:  # noqa: ANN001
    """``RECAP_STUDIO_SESSION_HOURS`` (or ``serve --session-hours``) ends a session after that long."""
    with environment(RECAP_STUDIO_SESSION_HOURS="0.001"):  # 3.6 s
        server = start_studio(tmp_path / "home", demo=False)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            _login(client, ANNOTATOR)
            wait_for(lambda: client.get("/config").status_code == 401, 60, what="the session to expire")
            _login(client, ANNOTATOR)  # a new login opens a new session
    finally:
        stop_studio(server)


def test_session_policy_ends_old_disabled_and_superseded_sessions(ws: Workspace) -> None:
    """The middleware's rules, on a real user row; the clock is moved by rewriting the login time."""
    import anyio

    users.add_user(ws, "carol", "annotator", "carol-password")
    app = SimpleNamespace(tokens={}, cookie_id="c1")
    policy = SessionPolicy(ws, timedelta(hours=1), recheck_s=0.0)

    def request(token: str) -> dict:
        app.tokens[token] = "carol"
        return {"type": "http", "app": app, "headers": [(b"cookie", f"access-token-c1={token}".encode())]}

    def allowed(scope: dict) -> bool:
        return anyio.run(policy.allows, scope, "carol")

    fresh = request("t-fresh")
    policy.record_login(app, "t-fresh")
    assert allowed(fresh)
    policy.issued["t-fresh"] -= timedelta(hours=1)  # an hour later
    assert not allowed(fresh) and "t-fresh" not in app.tokens  # dropped for good

    second = request("t-second")
    policy.record_login(app, "t-second")
    assert allowed(second)
    policy.issued["t-second"] -= timedelta(minutes=1)  # logged in a minute before the change
    users.set_password(ws, "carol", "new-carol-password")
    assert not allowed(second)

    third = request("t-third")
    policy.record_login(app, "t-third")  # after the change: fine
    assert allowed(third)
    users.set_active(ws, "carol", False)
    assert not allowed(third)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--session-hours", "0"], {}, "a session must last a positive number of hours"),
        ([], {"RECAP_STUDIO_SESSION_HOURS": "soon"}, "RECAP_STUDIO_SESSION_HOURS='soon' is not a number"),
        (["--max-upload-mb", "0"], {}, "the upload limit must be at least 1 MB"),
        ([], {"RECAP_STUDIO_MAX_UPLOAD_MB": "lots"}, "is not a whole number of megabytes"),
    ],
)
def test_serve_refuses_a_bad_limit_in_one_line(tmp_path, args: list[str], env: dict, message: str) -> None:  # noqa: ANN001
    with environment(**env):
        result = run_cli(tmp_path / "home", "serve", "--port", "1", *args)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr, (
        result.stderr
    )


def test_an_upload_past_the_size_limit_is_refused(studio: Studio) -> None:
    """``serve --max-upload-mb`` / RECAP_STUDIO_MAX_UPLOAD_MB: before, any size was taken."""
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        _login(client, ANNOTATOR)
        small = client.post("/gradio_api/upload", files={"files": ("small.csv", b"image,alt\n" * 1000)})
        assert small.status_code == 200, small.text
        big = client.post("/gradio_api/upload", files={"files": ("big.csv", b"x" * (2 * 1024 * 1024))})
        assert big.status_code == 413, big.text
