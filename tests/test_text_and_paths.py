"""CLIP token counts match open_clip's tokenizer; workspace paths never escape."""

from __future__ import annotations

import os

import pytest

from backend.clip_tokens import CONTEXT_LENGTH, clip_token_count, clip_token_ids, is_truncated, word_count
from backend.workspace import UnsafePathError, Workspace, resolve_home, safe_join

SAMPLES = [
    "A red circle and two blue squares on a green background.",
    "IMG_2034.JPG",
    "Café déjà-vu — “quoted” text, 3 dogs' toys!!! &amp; more",
    "https://example.com/x?y=1",
    "  multiple   spaces\tand\nnewlines ",
    "日本語のテキスト 🐱 emoji",
    "don't they'll I'm we've",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_clip_token_ids_match_open_clip(text: str) -> None:
    from open_clip.tokenizer import SimpleTokenizer  # the reference; needs torch, tests only

    assert clip_token_ids(text) == SimpleTokenizer().encode(text)


def test_truncation_flag_past_77_tokens() -> None:
    short = "a red circle"
    long = " ".join(["red circle"] * 40)
    assert clip_token_count(short) == 5 and not is_truncated(short)
    assert clip_token_count(long) == 82 and is_truncated(long)
    assert CONTEXT_LENGTH == 77
    assert word_count(long) == 80


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "C:/windows", "", ".", "a/../.."])
def test_safe_join_refuses_escapes(tmp_path, bad: str) -> None:  # noqa: ANN001
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, bad)


def test_safe_join_refuses_symlinks_and_accepts_plain_paths(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.txt").write_text("x")
    os.symlink("/etc", tmp_path / "link")
    assert safe_join(tmp_path, "sub/ok.txt") == tmp_path.resolve() / "sub" / "ok.txt"
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_join(tmp_path, "link/passwd")


def test_home_comes_from_flag_then_environment(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("RECAP_STUDIO_HOME", str(tmp_path / "env-home"))
    assert resolve_home(None) == (tmp_path / "env-home").resolve()
    assert resolve_home(tmp_path / "flag") == (tmp_path / "flag").resolve()
    ws = Workspace(tmp_path / "flag").ensure()
    assert ws.images_dir.is_dir() and ws.exports_dir.is_dir()
