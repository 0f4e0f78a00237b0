"""Who may fetch which file, and what an annotator's image looks like (issue 9 §2).

Real workspace, real stored images, a real open campaign; the per-user file check is the
same object the studio's middleware asks (:class:`studio.access.FileAccess`).
"""

from __future__ import annotations

import inspect
import io
import tempfile
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin

from backend import arena
from backend.storage import image_path, thumb_path
from backend.users import add_user
from backend.visibility import any_campaign_open, sha_is_blinded, stored_sha
from backend.workspace import Workspace
from studio.access import FileAccess, pixels_only
from tests.blind_world import CAMPAIGN, MARKER, BlindWorld, make_blind_world


@pytest.fixture
def world(ws: Workspace) -> tuple[Workspace, BlindWorld]:
    add_user(ws, "boss", "admin", "boss-pass-long-enough")
    add_user(ws, "ann", "annotator", "ann-pass-long-enough")
    return ws, make_blind_world(ws)


def url(path: Path | str) -> str:
    return f"/gradio_api/file={path}"


def test_annotators_get_no_originals_and_nothing_named_by_a_judged_image(
    world: tuple[Workspace, BlindWorld],
) -> None:
    ws, w = world
    allows = FileAccess(ws)
    blind, free = w.blind_shas[0], w.open_shas[0]
    original = image_path(ws, blind, "png")
    assert original.is_file() and MARKER.encode() in original.read_bytes()  # the provenance chunk
    cached = Path(tempfile.gettempdir()) / "gradio" / ("ab" * 32) / original.name  # Gradio's copy

    # admins get everything
    for path in (original, thumb_path(ws, blind), cached):
        assert allows("boss", url(path))
    # annotators: never a stored original by its path, judged or not
    assert not allows("ann", url(original))
    assert not allows("ann", url(image_path(ws, free, "png")))
    assert not allows("ann", url(f"{ws.thumbs_dir}/../images/{blind[:2]}/{blind}.png"))  # no way round
    # nothing named by the SHA-256 of a judged image: its thumbnail, a cached copy of it
    assert not allows("ann", url(thumb_path(ws, blind)))
    assert not allows("ann", url(cached))
    # what the UI needs for open datasets still comes
    assert allows("ann", url(thumb_path(ws, free)))
    assert allows("ann", url(Path(tempfile.gettempdir()) / "gradio" / "cd" / "image.webp"))
    assert allows("ann", "/gradio_api/queue/join")  # not a file route: not this check's business
    assert not allows("nobody", url(thumb_path(ws, free)))  # an unknown or disabled account

    arena.close_campaign(ws, CAMPAIGN)  # closing unblinds: thumbnails come back, originals do not
    assert not any_campaign_open(ws)
    assert allows("ann", url(thumb_path(ws, blind)))
    assert not allows("ann", url(original))


def test_stored_names_and_blinded_content() -> None:
    sha = "0f" * 32
    assert stored_sha(f"{sha}.png") == sha and stored_sha(f"{sha}.jpg") == sha
    assert stored_sha("image.webp") is None and stored_sha(f"x{sha}.png") is None


def test_a_file_shared_with_an_open_dataset_is_still_withheld(world: tuple[Workspace, BlindWorld]) -> None:
    """Content addressing stores one file for both datasets: it is judged, so it is withheld."""
    from backend.datasets import get_or_create_dataset
    from backend.db import write_session
    from backend.images import add_image, decode_image

    ws, w = world
    with write_session(ws) as s:
        plain = get_or_create_dataset(s, "copy-of-one")
        data = image_path(ws, w.blind_shas[1], "png").read_bytes()
        add_image(s, ws, plain.id, decode_image(data), "innocent.png")
    assert sha_is_blinded(ws, w.blind_shas[1])
    assert not FileAccess(ws)("ann", url(thumb_path(ws, w.blind_shas[1])))


def test_pixels_only_keeps_the_pixels_and_nothing_else(tmp_path: Path) -> None:
    src = PILImage.new("RGB", (50, 30), (10, 20, 30))
    src.putpixel((7, 5), (250, 0, 0))
    info = PngImagePlugin.PngInfo()
    info.add_text("recap-studio", '{"checkpoint": "zorblax-ckpt-a"}')
    exif = PILImage.Exif()
    exif[0x010E] = "made by zorblax"
    path = tmp_path / f"{'ab' * 32}.png"
    src.save(path, pnginfo=info, exif=exif)
    clean = pixels_only(path)
    assert clean.info == {} and not clean.getexif() and clean.format is None
    assert clean.size == (50, 30) and clean.getpixel((7, 5)) == (250, 0, 0)
    for fmt in ("PNG", "WEBP"):
        out = io.BytesIO()
        clean.save(out, format=fmt)
        assert b"zorblax" not in out.getvalue()


# --------------------------------------------------------------------------- the handlers, called as an annotator


class Handlers:
    """The studio's event handlers as wired (found by their trigger's ``elem_id``), called as a
    direct API call would call them: with any input, and the caller's account in the request."""

    def __init__(self, ws: Workspace) -> None:
        from studio.app import build_app

        self.blocks = build_app(ws)
        config = self.blocks.get_config_file()
        self.ids = {
            c["props"]["elem_id"]: c["id"] for c in config["components"] if c.get("props", {}).get("elem_id")
        }
        self.ids["(timer)"] = next(c["id"] for c in config["components"] if c["type"] == "timer")
        self.deps = config["dependencies"]

    def call(self, user: str, trigger: str, event: str, *args: object) -> str:
        import gradio as gr

        target = self.ids[trigger]
        dep = next(d for d in self.deps if [target, event] in [list(t) for t in d["targets"]])
        fn = self.blocks.fns[dep["id"]].fn
        # as Gradio does: the caller's request goes to a handler that asks for it
        asks = "request" in inspect.signature(fn).parameters
        answer = fn(*args, request=gr.Request(username=user)) if asks else fn(*args)
        return repr(answer)


def judged_events(run_id: int) -> dict[str, tuple[str, str, tuple[object, ...]]]:
    """Every event that shows a dataset, its statistics, a run or metrics, aimed at the judged data."""
    from tests.blind_world import BLIND_DATASET

    return {
        "Datasets: table": ("datasets-refresh", "click", (None, None, None)),
        "Datasets: statistics": ("datasets-stats-dataset", "input", (BLIND_DATASET, 20_000)),
        "Review: statistics": ("rv-stats", "expand", (BLIND_DATASET, 20_000)),
        "Review: gallery": ("rv-dataset", "input", (BLIND_DATASET, [], [], "", 32)),
        "Runs: table": ("runs-filter", "input", ("all",)),
        "Runs: open a run": ("run-open", "click", (str(run_id),)),
        "Runs: timer": ("(timer)", "tick", (0, "all", str(run_id), "", "", "", None)),
        "Results: automatic metrics": ("auto-refresh", "click", ("all datasets", True)),
    }


def test_handlers_tell_an_annotator_nothing_about_a_judged_dataset(
    world: tuple[Workspace, BlindWorld],
) -> None:
    """Issue 9 §2: statistics, verbatim alt-text, runs and metrics of a dataset under an open
    campaign reach annotators through no handler, whatever they send; admins still get them."""
    from tests.blind_world import BLIND_DATASET

    ws, w = world
    handlers = Handlers(ws)
    for what, (trigger, event, args) in judged_events(w.run_id).items():
        told = handlers.call("ann", trigger, event, *args)
        if BLIND_DATASET in args:  # the name they sent, echoed back, tells them nothing: look past it
            told = told.replace(BLIND_DATASET, "<theirs>")
        assert MARKER not in told, f"{what} told the annotator: {told[:800]}"
        if what.startswith(("Runs: table", "Results")):
            assert "Closed to annotators while an Arena campaign is open" in told, what
        if what.startswith(("Datasets: statistics", "Review")):
            assert "judged blind in the Arena" in told, what
    for what in (
        "Datasets: table",
        "Datasets: statistics",
        "Review: statistics",
        "Runs: open a run",
        "Results: automatic metrics",
    ):
        trigger, event, args = judged_events(w.run_id)[what]
        assert MARKER in handlers.call("boss", trigger, event, *args), (
            f"{what} should show an admin everything"
        )
    arena.close_campaign(ws, CAMPAIGN)  # judging is over: annotators see it all again
    for what in ("Datasets: table", "Datasets: statistics", "Runs: open a run", "Results: automatic metrics"):
        trigger, event, args = judged_events(w.run_id)[what]
        assert MARKER in handlers.call("ann", trigger, event, *args), f"{what} after the campaign closed"


def test_only_an_admin_opens_every_caption_to_annotators(ws: Workspace) -> None:
    """The Review switch is an admin's: an annotator calling its handler directly is refused."""
    from gradio import Error as GradioError

    from backend.visibility import annotators_see_all_captions

    add_user(ws, "boss", "admin", "boss-pass-long-enough")
    add_user(ws, "ann", "annotator", "ann-pass-long-enough")
    handlers = Handlers(ws)
    with pytest.raises(GradioError, match="Not allowed"):
        handlers.call("ann", "rv-see-all", "input", True)
    assert annotators_see_all_captions(ws) is False
    assert "every" in handlers.call("boss", "rv-see-all", "input", True)
    assert annotators_see_all_captions(ws) is True
