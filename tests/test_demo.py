"""The offline demo: ground truth, alt-text styles, approved examples, users, idempotency."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys

import pytest
from PIL import Image as PILImage
from sqlalchemy import func
from sqlmodel import select

from backend.caption_stats import junk_reason
from backend.db import migrate, read_session
from backend.demo import (
    COLORS,
    CREDENTIALS_FILE,
    DEMO_ANNOTATOR,
    DEMO_DATASET,
    DEMO_SET,
    DEMO_SET_SIZE,
    N_EXAMPLES,
    PASSWORD_ENV,
    SHAPES,
    SIZES,
    create_demo,
    region_of,
)
from backend.models import AnnotationItem, AnnotationSet, Caption, Dataset, Image, User
from backend.storage import image_path
from backend.users import add_user, verify_login
from backend.workspace import Workspace
from tests.conftest import ADMIN, run_cli

_NUMBER = {1: "one", 2: "two", 3: "three", 4: "four"}


def _counts(ws) -> dict[str, int]:  # noqa: ANN001
    with read_session(ws) as s:
        return {
            "images": s.exec(select(func.count()).select_from(Image)).one(),
            "captions": s.exec(select(func.count()).select_from(Caption)).one(),
            "users": s.exec(select(func.count()).select_from(User)).one(),
            "sets": s.exec(select(func.count()).select_from(AnnotationSet)).one(),
            "items": s.exec(select(func.count()).select_from(AnnotationItem)).one(),
        }


def _hashes(ws) -> dict[str, str]:  # noqa: ANN001
    with read_session(ws) as s:
        return {u.name: u.password_hash for u in s.exec(select(User))}


@pytest.fixture
def no_env_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One demo workspace shared by the read-only tests of this module."""
    ws = Workspace(tmp_path_factory.mktemp("demo") / "home").ensure()
    migrate(ws)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(PASSWORD_ENV, raising=False)
        info = create_demo(ws)
    assert info.created and info.dataset == DEMO_DATASET and info.images == 60
    return ws


def test_demo_builds_ground_truth_scenes(demo_ws: Workspace) -> None:
    ws = demo_ws

    with read_session(ws) as s:
        ds = s.exec(select(Dataset).where(Dataset.name == DEMO_DATASET)).one()
        images = s.exec(select(Image).where(Image.dataset_id == ds.id).order_by(Image.id)).all()
    assert len(images) == 60
    assert images[0].original_key == "demo/scene_000.png"
    n_text = 0
    for img in images:
        assert (img.width, img.height, img.ext) == (256, 256, "png")
        meta = img.meta
        assert meta["background"] and 1 <= len(meta["objects"]) <= 4
        n_text += meta.get("text") is not None
        pixels = PILImage.open(io.BytesIO(image_path(ws, img.sha256, img.ext).read_bytes())).convert("RGB")
        for obj in meta["objects"]:
            assert set(obj) == {"shape", "color", "size", "x", "y", "region"}
            assert obj["shape"] in SHAPES and obj["color"] in COLORS and obj["size"] in SIZES
            assert obj["region"] == region_of(obj["x"], obj["y"])
            # the ground truth matches the pixels: each object's centre has its colour
            assert pixels.getpixel((obj["x"], obj["y"])) == COLORS[obj["color"]], (img.original_key, obj)
    assert n_text >= 3  # some scenes carry text to quote


def test_demo_alttext_styles_and_approved_examples(demo_ws: Workspace) -> None:
    ws = demo_ws
    with read_session(ws) as s:
        alts = s.exec(select(Caption).where(Caption.kind == "alttext")).all()
        humans = s.exec(select(Caption).where(Caption.kind.in_(["human_short", "human_long"]))).all()
        users = {u.id: u for u in s.exec(select(User))}
        images = {img.id: img for img in s.exec(select(Image))}

    assert len(alts) == 60 and len({c.image_id for c in alts}) == 60
    styles = {c.provenance["demo_alttext_style"] for c in alts}
    assert styles == {"partial", "junk", "wrong", "faithful"}
    for c in alts:
        style = c.provenance["demo_alttext_style"]
        assert c.source == "demo" and c.status == "final"
        if style == "junk":
            assert junk_reason(c.text) is not None, c.text
        else:
            assert junk_reason(c.text) is None, c.text
        if style == "wrong":
            assert c.provenance["demo_error"] in {"color", "count"}
        if style == "faithful":  # names every object's colour and shape
            for obj in images[c.image_id].meta["objects"]:
                assert obj["color"] in c.text.lower() and obj["shape"] in c.text.lower()

    assert len(humans) == 2 * N_EXAMPLES
    for c in humans:
        assert c.status == "approved" and c.is_current
        assert users[c.annotator_id].name == DEMO_ANNOTATOR
        assert users[c.reviewed_by].name == "admin"
        meta = images[c.image_id].meta
        text = c.text.lower()
        assert meta["background"] in text
        if c.kind == "human_long":  # every object: colour, shape, size and where it is
            n = len(meta["objects"])
            assert ("a single" if n == 1 else _NUMBER[n]) in text
            for obj in meta["objects"]:
                assert f"{obj['size']} {obj['color']} {obj['shape']}" in text
                assert obj["region"] in text
            if meta.get("text"):
                assert f'"{meta["text"]["content"].lower()}"' in text
            else:
                assert "no text" in text

    with read_session(ws) as s:
        aset = s.exec(select(AnnotationSet).where(AnnotationSet.name == DEMO_SET)).one()
        n_items = s.exec(
            select(func.count()).select_from(AnnotationItem).where(AnnotationItem.set_id == aset.id)
        ).one()
        admin = s.exec(select(User).where(User.name == "admin")).one()
    assert n_items == DEMO_SET_SIZE and aset.created_by == admin.id


def test_demo_users_credentials_and_idempotency(ws, no_env_password) -> None:  # noqa: ANN001
    info = create_demo(ws)
    cred = ws.home / CREDENTIALS_FILE
    assert info.credentials_file == cred and cred.exists()
    assert stat.S_IMODE(os.stat(cred).st_mode) == 0o600
    text = cred.read_text()
    assert info.admin_password and f"admin\t{info.admin_password}" in text
    annotator_pw = next(
        line.split("\t")[1] for line in text.splitlines() if line.startswith(f"{DEMO_ANNOTATOR}\t")
    )
    assert verify_login(ws, "admin", info.admin_password)
    assert verify_login(ws, DEMO_ANNOTATOR, annotator_pw)
    assert "http://127.0.0.1:7860" in info.describe() and info.admin_password in info.describe()

    before = _counts(ws)
    hashes = _hashes(ws)
    stored = {p: p.stat().st_mtime_ns for p in ws.images_dir.rglob("*") if p.is_file()}
    again = create_demo(ws)
    # nothing is rendered or written again: every stored file is untouched and none is added
    assert {p: p.stat().st_mtime_ns for p in ws.images_dir.rglob("*") if p.is_file()} == stored
    assert not again.created
    assert _counts(ws) == before
    assert _hashes(ws) == hashes  # no password changed
    assert again.admin_password == info.admin_password  # the same login is reported
    assert cred.read_text() == text


def test_demo_keeps_an_existing_admin_password(ws, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv(PASSWORD_ENV, "from-the-env")
    add_user(ws, "admin", "admin", "my-own-password")
    info = create_demo(ws)
    assert info.admin_password is None
    assert "existing password unchanged" in info.describe()
    assert verify_login(ws, "admin", "my-own-password")
    assert not verify_login(ws, "admin", "from-the-env")
    assert "my-own-password" not in (ws.home / CREDENTIALS_FILE).read_text()


def test_demo_admin_password_from_env(ws, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv(PASSWORD_ENV, "env-secret-long")
    info = create_demo(ws)
    assert info.admin_password == "env-secret-long" and verify_login(ws, "admin", "env-secret-long")
    assert "env-secret-long" not in (ws.home / CREDENTIALS_FILE).read_text()  # not written to disk
    assert create_demo(ws).admin_password == "env-secret-long"


def test_demo_cli_twice(tmp_path) -> None:  # noqa: ANN001
    home = tmp_path / "home"
    first = run_cli(home, "demo")
    assert first.returncode == 0, first.stderr
    assert "http://127.0.0.1:7860" in first.stdout and "admin" in first.stdout
    ws = Workspace(home)
    counts = _counts(ws)
    assert counts["images"] == 60
    assert verify_login(ws, *ADMIN)  # run_cli pins the demo admin's password
    second = run_cli(home, "demo")
    assert second.returncode == 0, second.stderr
    assert "nothing added" in second.stdout and ADMIN[1] in second.stdout
    assert _counts(ws) == counts


def test_demo_cli_refuses_a_too_short_env_password(tmp_path) -> None:  # noqa: ANN001
    """One clear line and exit 2, not a traceback; nothing is built with a password nobody chose."""
    home = tmp_path / "home"
    env = {**os.environ, "RECAP_STUDIO_DEMO_PASSWORD": "abc"}
    result = subprocess.run(
        [sys.executable, "-m", "studio.cli", "--home", str(home), "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "RECAP_STUDIO_DEMO_PASSWORD" in result.stderr and "password" in result.stderr
    assert not (home / "images").exists() or not any((home / "images").iterdir())
