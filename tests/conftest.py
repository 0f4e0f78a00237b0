"""Shared fixtures: real workspaces (SQLite files, or databases on a real PostgreSQL server),
a real studio server, real Chromium.

Browser tests use one Chromium per test module (``browser`` is module-scoped) to keep
the suite lean; each test opens its own context so cookies never leak between users.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from backend.db import migrate
from backend.users import add_user
from backend.workspace import Workspace
from tests.postgres_cluster import (
    TEST_SETTINGS,
    PostgresCluster,
    PostgresUnavailable,
    make_template,
    start_cluster,
)

T = TypeVar("T")

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
# How long a browser test waits for the page to show what the server sent. Generous on
# purpose: CI machines are shared and now and then stall for many seconds; a passing test
# never waits this long, so only a real failure pays for it.
UI_WAIT_MS = 60_000
ADMIN = ("admin", "admin-password")  # 12+ characters: the minimum for a login
ANNOTATOR = ("ann", "ann-password")
ANNOTATOR2 = ("bob", "bob-password")


# --------------------------------------------------------------------------- database engines

ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "engines(*names): run the test's workspace (the ws fixture) on each engine named "
        "(sqlite, postgresql; none named: both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``engines`` (a module's ``pytestmark``, or one test: the closest wins) that use
    ``ws`` or ``engine`` run once per engine named; the others keep the embedded default alone."""
    marker = metafunc.definition.get_closest_marker("engines")
    if "engine" in metafunc.fixturenames and marker is not None:
        metafunc.parametrize("engine", marker.args or ENGINES, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The database engine of this test's workspace: ``sqlite`` unless parametrized."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A private PostgreSQL server for the whole session (see tests/postgres_cluster.py), with a
    migrated template database that each test's database is copied from.

    Without the server binaries: a failure under CI (``CI=true``: the suite must test both
    engines there), a skip elsewhere (a laptop without PostgreSQL still runs the SQLite half).
    """
    try:
        cluster = start_cluster(TEST_SETTINGS)
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL tests cannot run in CI: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        make_template(cluster)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def db_url(engine: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The database URL of this test's workspace: None (the folder's studio.db) for SQLite, a
    fresh database on the session's server for PostgreSQL (dropped afterwards)."""
    if engine == "sqlite":
        yield None
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    url = cluster.new_database()
    try:
        yield url
    finally:
        from backend.db import dispose_engines

        dispose_engines(url)
        cluster.drop_database(url)


@pytest.fixture
def ws(tmp_path: Path, db_url: str | None) -> Workspace:
    workspace = Workspace(tmp_path / "home", db_url).ensure()
    migrate(workspace)
    return workspace


def wait_for(
    check: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.25
) -> T:
    """Poll ``check`` until it returns something truthy and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def run_cli(
    home: Path, *args: str, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
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
    log = home / "server.log"
    url, process = serve(home, log, timeout)
    return Studio(url=url, home=home, ws=ws, process=process, log=log)


def serve(home: Path, log: Path, timeout: float = 120) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``recap-studio serve`` on ``home`` at a free port, its output in ``log``, and wait
    until it answers; (its URL, the process). Adds no users: ``scripts/screenshots.py`` uses it
    on a user's own workspace."""
    port = free_port()
    script = Path(sys.executable).parent / "recap-studio"  # the console script users run
    process = subprocess.Popen(
        [str(script), "--home", str(home), "serve", "--port", str(port)],
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
    return url, process


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block (e.g. while a server starts, so
    its process inherits them), then put back exactly what was there."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def stop_runs_and_studio(studio: Studio) -> None:
    """Cancel the runs a browser test left queued or running, then stop the server."""
    from backend import jobs

    for run in jobs.list_runs(studio.ws, status=jobs.ACTIVE):
        with contextlib.suppress(jobs.JobError):
            jobs.cancel_run(studio.ws, int(run.id), grace_s=5)
    stop_studio(studio)


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
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_WAIT_MS)  # expect(...) retries its assertion this long
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def launched_id(page) -> int | None:  # noqa: ANN001 - playwright page
    """The run id the Runs tab's launch message names (None before the first launch)."""
    match = re.search(r"Launched run #(\d+) \(", page.locator("#launch-result").inner_text())
    return int(match.group(1)) if match else None


# Pages opened by login() in the running test, so a failure report can show what they showed.
_open_pages: list = []


def track_page(page) -> None:  # noqa: ANN001 - playwright page
    """Show this page in the report if the running test fails."""
    _open_pages.append(page)


def login(browser, studio: Studio, user: tuple[str, str]):  # noqa: ANN001, ANN201 - playwright objects
    """A fresh browser context logged in as ``user``; returns its page on the studio.

    Every Playwright wait without its own timeout gets :data:`UI_WAIT_MS`.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_WAIT_MS)
    page = context.new_page()
    track_page(page)
    page.goto(studio.url)
    page.get_by_label("username").fill(user[0])
    page.get_by_label("password").fill(user[1])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#main-tabs", timeout=UI_WAIT_MS)
    return page


def open_tab(page, name: str, ready_selector: str) -> None:  # noqa: ANN001 - playwright page
    """Select a main tab and wait until ``ready_selector`` is visible in it.

    The click is repeated if the tab is not selected a few seconds later: a click that lands
    while the page is still applying its load events can be lost on a slow machine.
    """
    tab = page.locator("#main-tabs").get_by_role("tab", name=name, exact=True)
    deadline = time.monotonic() + UI_WAIT_MS / 1000
    while True:
        tab.click()
        try:
            page.wait_for_selector(ready_selector, state="visible", timeout=5_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; retried below
            if time.monotonic() >= deadline:
                raise
            if tab.get_attribute("aria-selected") == "true":
                page.wait_for_selector(ready_selector, state="visible", timeout=UI_WAIT_MS)
                return


def open_runs(page) -> None:  # noqa: ANN001 - playwright page
    """The Runs tab, once its runs table has been filled in."""
    open_tab(page, "Runs", "#runs-page")
    page.wait_for_function(
        "() => document.querySelector('#runs-page') && document.querySelector('#runs-page').innerText.trim()",
        timeout=UI_WAIT_MS,
    )


def _page_state(page) -> str:  # noqa: ANN001
    """What a page showed when its test failed: address, selected tabs, visible text."""
    try:
        if page.is_closed():
            return "(closed)"
        selected = page.locator("[role=tab][aria-selected=true]")
        tabs = [selected.nth(i).inner_text(timeout=5_000) for i in range(selected.count())]
        text = re.sub(r"\n\s*\n+", "\n", page.locator("body").inner_text(timeout=5_000))
        return f"url: {page.url}\nselected tabs: {tabs}\nvisible text (first 3000 chars):\n{text[:3000]}"
    except Exception as exc:  # noqa: BLE001 - a report must never fail
        return f"(could not read the page: {exc})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    """On a failing browser test, attach what its pages showed and the server's last log lines.

    Why: CI prints only the report; without these a timing failure there cannot be told from
    a real one.
    """
    report = yield
    if call.when == "teardown":
        _open_pages.clear()
    if report.failed and call.when in ("setup", "call"):
        for n, page in enumerate(_open_pages):
            report.sections.append((f"page {n}", _page_state(page)))
        studio = getattr(item, "funcargs", {}).get("studio")
        if isinstance(studio, Studio) and studio.log.exists():
            lines = studio.log.read_text(errors="replace").splitlines()[-60:]
            report.sections.append(("studio server log (last 60 lines)", "\n".join(lines)))
    return report


@pytest.fixture
def keep_root_logging() -> Iterator[None]:
    """A job run inline points the root logger at the run's log file; put pytest's handlers back.
    Modules that run jobs in-process use it: ``pytest.mark.usefixtures("keep_root_logging")``."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
