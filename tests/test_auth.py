"""Login is required for every page and API route; passwords are hashed; roles exist.

Runs against the real studio server (subprocess) over HTTP. The route list comes from
the same Gradio app the server builds, so a route Gradio adds in a later version is
covered automatically.
"""

from __future__ import annotations

import re

import httpx
import pytest

from backend.users import get_user, verify_login
from studio.auth_guard import is_public
from tests.conftest import ADMIN, ANNOTATOR, Studio, run_cli


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
                walk(route.original_router.routes, prefix + (getattr(route.include_context, "prefix", "") or ""))

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
            assert response.status_code == 401, f"{method} {path} answered {response.status_code} without login"
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
    result = run_cli(home, "user", "add", "carol", "--role", "annotator", "--password-stdin", stdin="s3cret-pass\n")
    assert result.returncode == 0, result.stderr
    from backend.workspace import Workspace

    ws = Workspace(home)
    user = get_user(ws, "carol")
    assert user is not None and user.role == "annotator"
    assert "s3cret-pass" not in user.password_hash and user.password_hash.startswith("$argon2")
    assert verify_login(ws, "carol", "s3cret-pass") and not verify_login(ws, "carol", "nope")
    assert b"s3cret-pass" not in (home / "studio.db").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dave", "--role", "superuser"], "unknown role"),
        (["carol", "--role", "admin"], "already exists"),
    ],
)
def test_user_add_cli_refuses_bad_input(tmp_path, args: list[str], message: str) -> None:  # noqa: ANN001
    home = tmp_path / "home"
    run_cli(home, "user", "add", "carol", "--password-stdin", stdin="pw-1234\n")
    result = run_cli(home, "user", "add", *args, "--password-stdin", stdin="pw-1234\n")
    assert result.returncode == 2
    assert message in result.stderr
