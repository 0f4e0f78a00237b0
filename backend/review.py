"""Review queries: one page of a dataset's images at a time, every variant of one image,
and word-level diffs between variants.

Why SQL does all the work: a dataset may hold a million captions, so a page is one
``LIMIT/OFFSET`` query over the ``image`` table (ordered by its primary key, which the
``dataset_id`` index already carries), the total is one ``COUNT`` with the same filters,
and the caption filters are ``EXISTS`` sub-queries that use the ``(image_id, kind)``
index. Nothing here loads a dataset's rows into Python.
"""

from __future__ import annotations

import difflib
import html
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func
from sqlmodel import select

from backend.clip_tokens import CONTEXT_LENGTH, clip_token_count, word_count
from backend.compositional.prompts import PromptFormatError
from backend.datasets import DatasetNotFound, get_dataset
from backend.db import read_session
from backend.miniature.accuracy import AspectScore, caption_accuracy
from backend.miniature.world import Scene
from backend.models import Caption, CaptionKind, Dataset, Image, User
from backend.scores import CaptionScore, caption_scores
from backend.shards import member_refs
from backend.storage import (
    MemberError,
    ensure_original,
    ensure_thumbnail,
    image_path,
    read_members,
    thumb_path,
    unavailable_thumbnail,
)
from backend.visibility import EVERYONE, Viewer, visible_captions
from backend.workspace import Workspace

# Column order of the side-by-side view: alt-text | human | recap | anything else.
KIND_ORDER: tuple[str, ...] = (
    CaptionKind.alttext.value,
    CaptionKind.human_short.value,
    CaptionKind.human_long.value,
    CaptionKind.recap_short.value,
    CaptionKind.recap_long.value,
)
KIND_LABELS: dict[str, str] = {
    CaptionKind.alttext.value: "alt-text",
    CaptionKind.human_short.value: "human short",
    CaptionKind.human_long.value: "human long",
    CaptionKind.recap_short.value: "recap short",
    CaptionKind.recap_long.value: "recap long",
}
DEFAULT_PAGE_SIZE = 48
MAX_PAGE_SIZE = 500


class ReviewError(ValueError):
    pass


def kind_label(kind: str) -> str:
    """Human-readable column title of a caption kind ("other: upsampled" for the rest)."""
    return KIND_LABELS.get(kind, f"other: {kind}")


def kind_sort_key(kind: str) -> tuple[int, str]:
    """Known kinds in :data:`KIND_ORDER`, then every other kind alphabetically."""
    try:
        return (KIND_ORDER.index(kind), "")
    except ValueError:
        return (len(KIND_ORDER), kind)


@dataclass
class GalleryPage:
    items: list[tuple[int, str, str]]  # (image_id, thumbnail path, label)
    total: int  # images matching the filters
    page: int  # 0-based, clamped to the pages that exist
    pages: int  # at least 1, even when nothing matches
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def image_ids(self) -> list[int]:
        return [item[0] for item in self.items]

    def describe(self) -> str:
        """'page 2 of 5 · 230 images' as the UI shows it."""
        noun = "image" if self.total == 1 else "images"
        return f"page {self.page + 1} of {self.pages} · {self.total:,} {noun}"


@dataclass
class Variant:
    caption_id: int
    kind: str
    text: str
    status: str
    source: str
    run_id: int | None
    author: str | None  # annotator name for human captions
    created_at: datetime | None
    words: int
    clip_tokens: int
    provenance: dict[str, Any] | None = None
    label: str = ""  # unique within an image, e.g. "human short · ann"
    # newest score per (metric, model, pretrained): (metric, value, "model/pretrained", truncated)
    scores: list[tuple[str, float, str, bool]] = field(default_factory=list)
    # against the image's ground truth, where it has one (the miniature world): aspect -> score
    truth_accuracy: dict[str, AspectScore] | None = None

    @property
    def truncated(self) -> bool:
        """CLIP would drop the tail of this caption (more than 77 tokens)."""
        return self.clip_tokens > CONTEXT_LENGTH

    @property
    def column(self) -> str:
        return kind_label(self.kind)

    @property
    def origin(self) -> str:
        """Who or what wrote it: the annotator, the run, or the import source."""
        parts = []
        if self.author:
            parts.append(self.author)
        if self.run_id is not None:
            parts.append(f"run {self.run_id}")
        if self.source and not (self.author and self.source == "annotate"):
            parts.append(self.source)
        return " · ".join(parts) or "unknown"


@dataclass
class ImageDetail:
    image_id: int
    dataset: str
    original_key: str
    width: int
    height: int
    path: str  # the stored original
    thumb: str
    meta: dict[str, Any] | None = None
    variants: list[Variant] = field(default_factory=list)

    def variant(self, label: str) -> Variant | None:
        return next((v for v in self.variants if v.label == label), None)


def _current(viewer: Viewer, *conds: Any) -> Any:
    """EXISTS a current caption of the outer image, visible to ``viewer``, matching ``conds``.

    ``is_current`` is wrapped in COALESCE on purpose: as a bare column SQLite's planner may
    pick its low-selectivity index for the correlated sub-query and scan every current
    caption once per image (quadratic); wrapped, it looks captions up by image id.
    """
    return exists().where(
        Caption.image_id == Image.id,
        func.coalesce(Caption.is_current, False).is_(True),
        visible_captions(viewer),
        *conds,
    )


def _like_pattern(search: str) -> str:
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search_subquery(search: str, sqlite: bool, viewer: Viewer = EVERYONE) -> Any:
    """Ids of images with a current caption ``viewer`` may read containing ``search`` (case-insensitive).

    One uncorrelated scan of the caption text, evaluated once per query rather than once
    per image, so a deep page costs no more than the first. SQLite's LIKE already ignores
    ASCII case (its lower() is ASCII-only too), so there it skips lower(); elsewhere ILIKE.
    """
    pattern = _like_pattern(search)
    text_match = (
        Caption.text.like(pattern, escape="\\") if sqlite else Caption.text.ilike(pattern, escape="\\")
    )
    return select(Caption.image_id).where(
        Caption.is_current == True,  # noqa: E712
        visible_captions(viewer),
        text_match,
    )


def _filters(
    dataset_id: int,
    has_kinds: tuple[str, ...] | list[str],
    missing_kinds: tuple[str, ...] | list[str],
    search: str,
    sqlite: bool = True,
    viewer: Viewer = EVERYONE,
) -> list[Any]:
    conds: list[Any] = [Image.dataset_id == dataset_id]
    for kind in dict.fromkeys(has_kinds):
        conds.append(_current(viewer, Caption.kind == kind))
    for kind in dict.fromkeys(missing_kinds):
        conds.append(~_current(viewer, Caption.kind == kind))
    search = (search or "").strip()
    if search:
        conds.append(Image.id.in_(_search_subquery(search, sqlite, viewer)))
    return conds


def _label(image_id: int, original_key: str, max_len: int = 28) -> str:
    name = original_key.replace("\\", "/").rsplit("/", 1)[-1] or original_key
    if len(name) > max_len:
        name = name[: max_len - 1] + "…"
    return f"#{image_id} {name}"


def gallery_page(
    ws: Workspace,
    dataset: str,
    *,
    has_kinds: tuple[str, ...] | list[str] = (),
    missing_kinds: tuple[str, ...] | list[str] = (),
    search: str = "",
    page: int = 0,
    page_size: int = DEFAULT_PAGE_SIZE,
    viewer: Viewer = EVERYONE,
) -> GalleryPage:
    """One page of thumbnails of ``dataset`` whose current captions match the filters.

    ``has_kinds``: every listed kind has a current caption; ``missing_kinds``: none of the
    listed kinds has one; ``search``: some current caption contains the text
    (case-insensitive substring). ``page`` is 0-based and clamped into range. Filters and
    search read only the captions ``viewer`` may read (:mod:`backend.visibility`): an
    annotator cannot find another's unreviewed caption by its words.
    """
    if page_size < 1 or page_size > MAX_PAGE_SIZE:
        raise ReviewError(f"page size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
    both = set(has_kinds) & set(missing_kinds)
    if both:
        raise ReviewError(f"a kind cannot be both present and missing: {', '.join(sorted(both))}")
    with read_session(ws) as s:
        ds = get_dataset(s, dataset)
        sqlite = s.get_bind().dialect.name == "sqlite"
        conds = _filters(ds.id, tuple(has_kinds), tuple(missing_kinds), search, sqlite, viewer)
        total = s.exec(select(func.count()).select_from(Image).where(*conds)).one()
        pages = max(1, math.ceil(total / page_size))
        page = min(max(0, int(page)), pages - 1)
        rows = s.exec(
            select(Image.id, Image.sha256, Image.original_key)
            .where(*conds)
            .order_by(Image.id)
            .limit(page_size)
            .offset(page * page_size)
        ).all()
        missing = [int(image_id) for image_id, sha, _ in rows if not thumb_path(ws, sha).exists()]
        refs = member_refs(s, missing) if missing else {}
    thumbs = _shard_thumbnails(ws, refs)
    items = [
        (image_id, str(thumbs.get(image_id) or thumb_path(ws, sha)), _label(image_id, key))
        for image_id, sha, key in rows
    ]
    return GalleryPage(items=items, total=total, page=page, pages=pages, page_size=page_size)


def _shard_thumbnails(ws: Workspace, refs: dict[int, Any]) -> dict[int, Path]:
    """Thumbnails of a page's images registered by reference, read out of their shards (one
    open per shard) and kept under their content address; a placeholder for those whose shard
    cannot be read, so one moved shard never breaks a page."""
    if not refs:
        return {}
    ids = list(refs)
    thumbs: dict[int, Path] = {}
    for image_id, data in zip(ids, read_members([refs[i] for i in ids]), strict=True):
        try:
            if isinstance(data, MemberError):
                raise data
            thumbs[image_id] = ensure_thumbnail(ws, refs[image_id].sha256, data)
        except OSError:
            thumbs[image_id] = unavailable_thumbnail(ws)
    return thumbs


def _labelled(variants: list[Variant]) -> list[Variant]:
    for v in variants:
        who = v.author or (f"run {v.run_id}" if v.run_id is not None else "")
        v.label = f"{v.column} · {who}" if who else v.column
    seen: dict[str, int] = {}
    for v in variants:
        seen[v.label] = seen.get(v.label, 0) + 1
    for v in variants:
        if seen[v.label] > 1:
            v.label = f"{v.label} #{v.caption_id}"
    return variants


def ground_truth_scene(meta: dict[str, Any] | None) -> Scene | None:
    """The image's exact ground truth, where it has one (the miniature world's images); else None."""
    if not meta:
        return None
    try:
        return Scene.from_meta(meta)
    except (PromptFormatError, KeyError, TypeError, ValueError):
        return None


def _latest_scores(rows: list[CaptionScore]) -> list[tuple[str, float, str, bool]]:
    """The newest score per metric and scoring model (rows come newest first)."""
    seen: set[tuple[str, str, str]] = set()
    out: list[tuple[str, float, str, bool]] = []
    for row in rows:
        key = (row.metric, row.model, row.pretrained)
        if key not in seen:
            seen.add(key)
            out.append((row.metric, row.value, f"{row.model}/{Path(row.pretrained).name}", row.truncated))
    return out


def image_variants(ws: Workspace, image_id: int, viewer: Viewer = EVERYONE) -> ImageDetail:
    """The image and every current caption variant ``viewer`` may read, in column order, with counts."""
    with read_session(ws) as s:
        row = s.exec(
            select(Image, Dataset.name)
            .join(Dataset, Dataset.id == Image.dataset_id)
            .where(Image.id == image_id)
        ).first()
        if row is None:
            raise ReviewError(f"image {image_id} does not exist")
        image, dataset_name = row
        ref = member_refs(s, [image_id]).get(image_id)
        captions = s.exec(
            select(Caption, User.name)
            .join(User, User.id == Caption.annotator_id, isouter=True)
            .where(Caption.image_id == image_id, Caption.is_current == True)  # noqa: E712
            .where(visible_captions(viewer))
            .order_by(Caption.id)
        ).all()
    by_caption = caption_scores(ws, image_id)
    variants = [
        Variant(
            caption_id=c.id,
            kind=c.kind,
            text=c.text,
            status=c.status,
            source=c.source,
            run_id=c.run_id,
            author=author,
            created_at=c.created_at,
            words=word_count(c.text),
            clip_tokens=clip_token_count(c.text),
            provenance=c.provenance,
            scores=_latest_scores(by_caption.get(c.id, [])),
        )
        for c, author in captions
    ]
    variants.sort(key=lambda v: (kind_sort_key(v.kind), v.caption_id))
    scene = ground_truth_scene(image.meta)
    if scene is not None:  # why: a reviewer sees at once what each caption gets right, not only how it reads
        for v in variants:
            v.truth_accuracy = caption_accuracy(v.text, scene).aspects
    path, thumb, meta = image_path(ws, image.sha256, image.ext), thumb_path(ws, image.sha256), image.meta
    if ref is not None and not path.exists():  # registered by reference: read out of its shard now
        try:
            path = ensure_original(ws, ref, image.ext)
            thumb = ensure_thumbnail(ws, image.sha256, path.read_bytes())
        except OSError as exc:  # the captions are still worth showing
            path = thumb = unavailable_thumbnail(ws)
            meta = {**(meta or {}), "unavailable": str(exc)}
    return ImageDetail(
        image_id=image.id,
        dataset=dataset_name,
        original_key=image.original_key,
        width=image.width,
        height=image.height,
        path=str(path),
        thumb=str(thumb),
        meta=meta,
        variants=_labelled(variants),
    )


def caption_kinds(ws: Workspace, dataset: str | None = None) -> list[str]:
    """Kinds with current captions (in one dataset, or anywhere), in column order.

    Without a dataset this reads only the ``kind`` index, so it stays fast on a large
    workspace; the well-known kinds are always offered too.
    """
    with read_session(ws) as s:
        if dataset is None:
            kinds = set(s.exec(select(Caption.kind).distinct()).all())
        else:
            ds = get_dataset(s, dataset)
            kinds = set(
                s.exec(
                    select(Caption.kind)
                    .join(Image, Image.id == Caption.image_id)
                    .where(Image.dataset_id == ds.id, Caption.is_current == True)  # noqa: E712
                    .distinct()
                ).all()
            )
    return sorted(kinds | set(KIND_ORDER), key=kind_sort_key)


def word_diff_html(a: str, b: str) -> str:
    """Word-level diff of ``a`` → ``b``: removed words in ``<del>``, added in ``<ins>``.

    All text is HTML-escaped, so captions can never inject markup into the page.
    """
    wa, wb = (a or "").split(), (b or "").split()
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        old = html.escape(" ".join(wa[i1:i2]))
        new = html.escape(" ".join(wb[j1:j2]))
        if tag == "equal":
            out.append(old)
        if tag in ("delete", "replace"):
            out.append(f"<del>{old}</del>")
        if tag in ("insert", "replace"):
            out.append(f"<ins>{new}</ins>")
    return " ".join(out)


def diff_ratio(a: str, b: str) -> float:
    """Share of words the two texts have in common (difflib ratio, 0–1)."""
    return difflib.SequenceMatcher(a=(a or "").split(), b=(b or "").split(), autojunk=False).ratio()


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "KIND_LABELS",
    "KIND_ORDER",
    "DatasetNotFound",
    "GalleryPage",
    "ImageDetail",
    "ReviewError",
    "Variant",
    "caption_kinds",
    "clip_visible_words",
    "diff_ratio",
    "gallery_page",
    "image_variants",
    "kind_label",
    "kind_sort_key",
    "word_diff_html",
]


def clip_visible_words(text: str) -> int:
    """How many leading words of ``text`` fit in CLIP's 77-token context.

    Tokens never cross word boundaries (CLIP's pre-tokenizer splits on words and
    punctuation first), so the count of a word prefix grows with it: a binary search
    finds the cut with a handful of tokenizer calls. Everything after it is what CLIP
    and the SD text encoder silently drop.
    """
    words = text.split()
    if clip_token_count(text) <= CONTEXT_LENGTH:
        return len(words)
    lo, hi = 0, len(words)  # words[:lo] fits, words[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if clip_token_count(" ".join(words[:mid])) <= CONTEXT_LENGTH:
            lo = mid
        else:
            hi = mid
    return lo
