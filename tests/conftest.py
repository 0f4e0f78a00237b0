"""Shared fixtures: real workspaces (SQLite files), a real studio server, real Chromium.

Browser tests use one Chromium per test module (``browser`` is module-scoped) to keep
the suite lean; each test opens its own context so cookies never leak between users.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.db import migrate
from backend.users import add_user
from backend.workspace import Workspace

CHROMIUM = os.environ.get("RECAP_STUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN = ("admin", "admin-pass")
ANNOTATOR = ("ann", "ann-pass")
ANNOTATOR2 = ("bob", "bob-pass")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "home").ensure()
    migrate(workspace)
    return workspace


def run_cli(home: Path, *args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ``recap-studio`` command line in a subprocess.

    The demo admin's password is pinned (RECAP_STUDIO_DEMO_PASSWORD) so tests can log in.
    """
    env = {**os.environ, "RECAP_STUDIO_DEMO_PASSWORD": ADMIN[1]}
    return subprocess.run(
        [sys.executable, "-m", "studio.cli", "--home", str(home), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Studio:
    url: str
    home: Path
    ws: Workspace
    process: subprocess.Popen[bytes]
    log: Path


def start_studio(home: Path, *, demo: bool = True, timeout: float = 120) -> Studio:
    """Start ``recap-studio serve`` (after ``demo`` when asked) and wait until it answers."""
    ws = Workspace(home).ensure()
    migrate(ws)
    if demo:
        result = run_cli(home, "demo")
        assert result.returncode == 0, result.stderr
    for name, password, role in ((*ADMIN, "admin"), (*ANNOTATOR, "annotator"), (*ANNOTATOR2, "annotator")):
        from backend.users import get_user

        if get_user(ws, name) is None:
            add_user(ws, name, role, password)
    port = free_port()
    log = home / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "--home", str(home), "serve", "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"studio exited early:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url + "/login_check", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # it answers (401 before login)
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        raise RuntimeError(f"studio did not start in {timeout}s:\n{log.read_text()}")
    return Studio(url=url, home=home, ws=ws, process=process, log=log)


def stop_studio(studio: Studio) -> None:
    studio.process.terminate()
    try:
        studio.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        studio.process.kill()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A real studio server on the demo workspace, shared by the tests of one module."""
    server = start_studio(tmp_path_factory.mktemp("studio") / "home")
    yield server
    stop_studio(server)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def login(browser, studio: Studio, user: tuple[str, str]):  # noqa: ANN001, ANN201 - playwright objects
    """A fresh browser context logged in as ``user``; returns its page on the studio."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(studio.url)
    page.get_by_label("username").fill(user[0])
    page.get_by_label("password").fill(user[1])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#main-tabs", timeout=30_000)
    return page
