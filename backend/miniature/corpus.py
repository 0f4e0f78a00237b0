"""The miniature corpus in a studio workspace: images with ground truth, alt-text, a human set, held-out prompts.

Why through the ordinary backend APIs (``add_image``, ``add_caption``, ``revise_human_caption`` and
``review_caption``, as :mod:`backend.demo` does): the experiment of issue 12 must run as ordinary
studio runs, so its data has to be ordinary studio data — images in a dataset with their truth in
``Image.meta``, alt-text as ``alttext`` captions (failure mode in provenance), and approved human
captions by an annotator account, shown in Annotate and Review like anyone's.

The simulated annotator and its reviewer are accounts created *disabled* (nobody can log in as
them; an admin can enable one and set a password). The held-out prompts are scenes whose layout
the seeded split of :func:`~backend.miniature.world.held_out` keeps out of the corpus, written as
structured JSONL (``backend.compositional.loaders.load_structured_jsonl`` reads it; ``eval
--prompts <file>`` takes it).

:func:`build_corpus` is idempotent: images are keyed by ``original_key`` (seed and index), so a
rerun adds nothing, and a larger ``n_images`` adds only the new images. It commits in chunks of
whole images (:data:`CHUNK_IMAGES`), so other writers never wait long; a build killed half-way
keeps its finished chunks, and a rerun adds the rest.
"""

from __future__ import annotations

import os
import random
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlmodel import Session, select

from backend.captions import add_caption, review_caption, revise_human_caption
from backend.datasets import get_or_create_dataset
from backend.db import write_session
from backend.images import add_image, decode_image
from backend.miniature.captions import ALTTEXT_MODES, SimulatedAnnotator, alttext, assign_modes
from backend.miniature.world import Scene, held_out, png_bytes, render, sample_scene
from backend.models import Caption, CaptionKind, CaptionStatus, Image, Role, User
from backend.users import add_user, get_user, set_active
from backend.workspace import Workspace

MAX_HUMAN_IMAGES = 200  # RECAP's human set is small on purpose (about a hundred images)
HELD_OUT_FRACTION = 0.1  # share of layouts kept for the held-out prompts
ANNOTATOR = "miniature-annotator"
REVIEWER = "miniature-reviewer"
SOURCE = "miniature"
#: the ground-truth caption of every corpus image: its scene's structured prompt, written in the
#: held-out prompts' own style. It trains the experiment's upper-bound arm (the captions a perfect
#: captioner would write) and is never shown as a human caption.
TRUTH_KIND = "truth"
_MAX_DRAWS = 200  # draws per wanted scene before giving up (the held-out part is small)
#: images per write transaction. SQLite has one writer at a time, and every other writer (the
#: experiment driver's progress, the runner's heartbeats) waits at most db.BUSY_TIMEOUT_MS (30 s):
#: one transaction for all 20,000 images of the cpu preset held the lock for over a minute and
#: failed the driver. Chunks alone were not enough: SQLite's lock is not fair, and a writer that
#: begins its next transaction at once starves the waiters, whose busy handler polls every 100 ms
#: at most. So each chunk is rendered before its transaction, which leaves the lock free meanwhile.
CHUNK_IMAGES = 500


def _key(seed: int, index: int) -> str:
    """The corpus image's ``original_key``: seed and index, so a rerun finds what exists."""
    return f"miniature/{seed}/{index:05d}.png"


class CorpusError(ValueError):
    """Arguments the corpus cannot be built with; the message says which and why."""


@dataclass
class CorpusReport:
    """What :func:`build_corpus` found and added."""

    dataset: str
    images: int  # images of the corpus in the dataset now
    images_added: int
    alttext_added: int
    human_added: int  # human captions (short and long) added
    truth_added: int  # ground-truth captions (TRUTH_KIND) added
    prompts_path: Path
    prompts: int
    prompts_written: bool
    modes: dict[str, int] = field(default_factory=dict)  # alt-text mode -> images
    human_mistakes: int = 0  # human captions with a recorded mistake (among those added)

    @property
    def created(self) -> bool:
        return bool(
            self.images_added or self.alttext_added or self.truth_added or self.human_added or self.prompts_written
        )


def corpus_scenes(n: int, seed: int, fraction: float = HELD_OUT_FRACTION) -> list[Scene]:
    """The first ``n`` distinct corpus scenes for ``seed`` (outside the held-out layouts).

    Prefix-stable: the first ``k`` of ``corpus_scenes(n)`` are ``corpus_scenes(k)``.
    """
    return _distinct(n, random.Random(seed), lambda s: not held_out(s, seed, fraction), key=repr)


def held_out_scenes(n: int, seed: int, fraction: float = HELD_OUT_FRACTION) -> list[Scene]:
    """``n`` held-out scenes asking for different things (distinct structured prompts)."""
    return _distinct(n, random.Random(f"held-out:{seed}"), lambda s: held_out(s, seed, fraction), key=_asks)


def _asks(scene: Scene) -> str:
    prompt = scene.structured()
    return repr((prompt.objects, prompt.relations))


def _distinct(
    n: int, rng: random.Random, keep: Callable[[Scene], bool], key: Callable[[Scene], str]
) -> list[Scene]:
    out: list[Scene] = []
    seen: set[str] = set()
    draws = 0
    while len(out) < n:
        draws += 1
        if draws > _MAX_DRAWS * max(n, 1):
            raise CorpusError(f"found only {len(out)} of {n} distinct scenes; ask for fewer")
        scene = sample_scene(rng)
        k = key(scene)
        if k in seen or not keep(scene):
            continue
        seen.add(k)
        out.append(scene)
    return out


def _account(ws: Workspace, name: str, role: str) -> None:
    """A disabled account for the simulated annotator or reviewer (created once)."""
    if get_user(ws, name) is None:
        add_user(ws, name, role, secrets.token_urlsafe(24))
        set_active(ws, name, False)


def _user_id(s: Session, name: str) -> int:
    user = s.exec(select(User).where(User.name == name)).one()
    assert user.id is not None
    return user.id


def write_prompts(
    path: Path,
    scenes: list[Scene],
    dataset: str,
    first: int = 0,
    rewrite: Callable[[int, Scene], str] | None = None,
) -> bool:
    """Write the held-out prompts as structured JSONL; False when the file already says the same.

    ``scenes`` are held-out scenes ``first``, ``first + 1``, … of the sequence (their keys say so).
    ``rewrite(index, scene)``, when given, words each prompt's text another way (a probe of prompt
    style); what an image is scored on stays the scene's.
    """
    prompts = [s.structured(key=f"{dataset}-heldout-{first + i:04d}") for i, s in enumerate(scenes)]
    if rewrite is not None:
        prompts = [replace(p, prompt=rewrite(first + i, s)) for i, (p, s) in enumerate(zip(prompts, scenes, strict=True))]
    lines = [p.to_json_line() for p in prompts]
    text = "\n".join(lines) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def build_corpus(
    ws: Workspace,
    dataset: str,
    n_images: int,
    human_images: int,
    seed: int,
    *,
    n_prompts: int = 100,
    proportions: dict[str, float] | None = None,
    mistake_rate: float | None = None,
    prompts_path: Path | None = None,
    chunk_images: int = CHUNK_IMAGES,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusReport:
    """Create (or complete) the miniature corpus in ``dataset`` and write its held-out prompts.

    ``n_images`` scenes with their truth in ``Image.meta`` and one alt-text each (modes in
    ``proportions``, default :data:`~backend.miniature.captions.ALTTEXT_MODES`); the first
    ``human_images`` (at most :data:`MAX_HUMAN_IMAGES`) also get an approved short and long
    caption from the simulated annotator. ``n_prompts`` held-out structured prompts go to
    ``prompts_path`` (default ``<home>/prompts/<dataset>-heldout.jsonl``).

    Images are written ``chunk_images`` at a time, each chunk in its own transaction (an image and
    all its captions always in the same one), and ``progress(done, total)`` is called before each.
    """
    if n_images < 1 or not 0 <= human_images <= min(n_images, MAX_HUMAN_IMAGES):
        raise CorpusError(
            f"need n_images >= 1 and 0 <= human_images <= min(n_images, {MAX_HUMAN_IMAGES}); "
            f"got {n_images} and {human_images}"
        )
    if n_prompts < 2:
        raise CorpusError(
            f"the held-out set needs at least 2 prompts (for the mismatched baseline), got {n_prompts}"
        )
    scenes = corpus_scenes(n_images, seed)
    modes = assign_modes(n_images, random.Random(f"modes:{seed}"), proportions or ALTTEXT_MODES)
    annotator = SimulatedAnnotator() if mistake_rate is None else SimulatedAnnotator(mistake_rate)
    _account(ws, ANNOTATOR, Role.annotator.value)
    _account(ws, REVIEWER, Role.admin.value)
    images_added = alttext_added = human_added = truth_added = mistakes = 0
    with write_session(ws) as s:
        ds = get_or_create_dataset(s, dataset)
        if not ds.description:
            ds.description = (
                f"Miniature world of issue 12 (seed {seed}): 32 px scenes with exact ground truth."
            )
            s.add(ds)
        assert ds.id is not None
        dataset_id = ds.id
        keys = select(Image.original_key, Image.id).where(Image.dataset_id == dataset_id)
        existing = dict(s.exec(keys).all())
        annotator_id, reviewer_id = _user_id(s, ANNOTATOR), _user_id(s, REVIEWER)
    for first in range(0, len(scenes), chunk_images):
        if progress is not None:
            progress(first, len(scenes))
        chunk = range(first, min(first + chunk_images, len(scenes)))
        # rendered before the transaction: the write lock is held for the writes alone, and other
        # writers get it while the next chunk renders (see chunk_images)
        keys = {i: _key(seed, i) for i in chunk}
        pixels = {i: decode_image(png_bytes(render(scenes[i]))) for i, key in keys.items() if key not in existing}
        with write_session(ws) as s:
            for i, key in keys.items():
                scene = scenes[i]
                image_id = existing.get(key)
                if image_id is None:
                    image, new = add_image(s, ws, dataset_id, pixels.pop(i), key, scene.to_meta())
                    images_added += new
                    image_id = image.id
                assert image_id is not None
                kinds = set(s.exec(select(Caption.kind).where(Caption.image_id == image_id)))
                if CaptionKind.alttext.value not in kinds:
                    alt = alttext(scene, modes[i], random.Random(f"alt:{seed}:{i}"))
                    add_caption(
                        s,
                        image_id,
                        CaptionKind.alttext.value,
                        alt.text,
                        source=SOURCE,
                        provenance=alt.provenance(),
                    )
                    alttext_added += 1
                if TRUTH_KIND not in kinds:
                    add_caption(
                        s, image_id, TRUTH_KIND, scene.structured().prompt, source=SOURCE,
                        provenance={"source": "ground truth", "what": "the scene's structured prompt"},
                    )  # fmt: skip
                    truth_added += 1
                if i >= human_images:
                    continue
                rng = random.Random(f"human:{seed}:{i}")
                for write, kind in (
                    (annotator.short, CaptionKind.human_short),
                    (annotator.long, CaptionKind.human_long),
                ):
                    caption = write(scene, rng)  # drawn either way, so the texts do not depend on what exists
                    if kind.value in kinds:
                        continue
                    row = revise_human_caption(
                        s, image_id, kind.value, annotator_id, caption.text,
                        status=CaptionStatus.submitted.value, source=SOURCE, provenance=caption.provenance(),
                    )  # fmt: skip
                    assert row.id is not None
                    review_caption(s, row.id, reviewer_id, approve=True)
                    human_added += 1
                    mistakes += bool(caption.mistakes)
    total = sum(1 for key in existing if key.startswith(f"miniature/{seed}/")) + images_added
    path = prompts_path or ws.home / "prompts" / f"{dataset}-heldout.jsonl"
    written = write_prompts(path, held_out_scenes(n_prompts, seed), dataset)
    return CorpusReport(
        dataset=dataset,
        images=total,
        images_added=images_added,
        alttext_added=alttext_added,
        human_added=human_added,
        truth_added=truth_added,
        prompts_path=path,
        prompts=n_prompts,
        prompts_written=written,
        modes=dict(Counter(modes)),
        human_mistakes=mistakes,
    )
