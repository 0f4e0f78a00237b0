"""Review tab: browse a dataset one page of thumbnails at a time, open an image to compare
every caption variant side by side (alt-text | human | recap | other) with word and CLIP
token counts (and, for an image with an exact ground truth, how much of each caption is right),
diff any two variants word by word, and look at dataset statistics.

Design notes
- One ``gr.Gallery`` holds one page; filters and paging are SQL queries
  (:mod:`backend.review`), so a million captions never reach the browser or Python lists.
- Caption text is always HTML-escaped before it is put into ``gr.HTML``.
- The statistics section (:func:`build_stats_section`) is shared with the Datasets tab;
  it reads at most ``limit`` captions per kind so a huge dataset still answers quickly.
- Every handler checks on the server what its user may see (:mod:`studio.access`): an
  annotator gets nothing about a dataset an open Arena campaign judges (gallery, image,
  statistics), reads only captions no annotator wrote, approved ones and their own (unless
  an admin opens all captions here), and sees images as pixels-only copies, never the
  stored original (it keeps a generated image's provenance chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from backend.clip_tokens import CONTEXT_LENGTH
from backend.datasets import DatasetNotFound, dataset_names
from backend.review import (
    ImageDetail,
    ReviewError,
    Variant,
    caption_kinds,
    clip_visible_words,
    diff_ratio,
    gallery_page,
    image_variants,
    kind_label,
    word_diff_html,
)
from backend.visibility import (
    EVERYONE,
    Viewer,
    annotators_see_all_captions,
    set_annotators_see_all_captions,
)
from backend.workspace import Workspace
from studio import access, plots
from studio.session import is_admin, require_admin_ui
from studio.ui_common import esc, no_change, parent_tab

PAGE_SIZES = [16, 32, 64, 96]
DEFAULT_PAGE_SIZE = 32
STATS_LIMIT = 20_000  # captions read per kind for statistics
PREFERRED_DATASET = "demo-shapes"

EMPTY_VARIANTS = "<div class='rv-empty'>Select an image in the gallery to compare its captions.</div>"
EMPTY_DIFF = "<div class='rv-empty'>Choose two variants to see what changed, word by word.</div>"


# --------------------------------------------------------------------------- HTML pieces


def _text_html(v: Variant) -> str:
    """The caption, with the part CLIP never sees (past 77 tokens) greyed out."""
    if not v.truncated:
        return esc(v.text)
    words = v.text.split()
    keep = clip_visible_words(v.text)
    seen, cut = " ".join(words[:keep]), " ".join(words[keep:])
    return f"{esc(seen)} <span class='rv-cut' title='CLIP and the SD text encoder never read this part'>{esc(cut)}</span>"


def _badge(v: Variant) -> str:
    if v.truncated:
        return (
            f"<span class='rv-badge rv-trunc' title='CLIP reads at most {CONTEXT_LENGTH} tokens; "
            f"the greyed-out tail is dropped'>truncated: {v.clip_tokens} &gt; {CONTEXT_LENGTH} tokens</span>"
        )
    return f"<span class='rv-badge rv-fits'>fits CLIP ({v.clip_tokens}/{CONTEXT_LENGTH})</span>"


ASPECT_LABELS = {"objects": "objects", "colors": "colours", "counts": "counts", "positions": "positions"}
TRUTH_TITLE = (
    "Against this image's ground truth. right: what the caption states that is true, of what it states; "
    "found: what the truth holds that the caption states, of all of it."
)


def truth_html(v: Variant) -> str:
    """The caption scored against the image's ground truth, one line per aspect ('' without a truth)."""
    if v.truth_accuracy is None:
        return ""
    rows = []
    for aspect, label in ASPECT_LABELS.items():
        a = v.truth_accuracy.get(aspect)
        if a is None:
            continue
        flawless = a.correct == a.claims and a.recalled == a.facts
        right = f"{a.correct}/{a.claims} right" if a.claims else "none stated"
        rows.append(
            f"<div class='rv-truth-row{' rv-truth-ok' if flawless else ''}' data-aspect='{aspect}'>"
            f"{label}: {right} · {a.recalled}/{a.facts} found</div>"
        )
    return f"<div class='rv-truth' title='{esc(TRUTH_TITLE)}'><b>vs truth</b>{''.join(rows)}</div>"


def variants_html(detail: ImageDetail | None) -> str:
    """Every variant in its own column, ordered alt-text | human short | human long | recap short | recap long | other."""
    if detail is None:
        return EMPTY_VARIANTS
    if not detail.variants:
        return "<div class='rv-empty'>This image has no captions yet.</div>"
    head, texts, counts, origins = [], [], [], []
    for v in detail.variants:
        kind_class = "rv-k-" + (v.kind if v.column != f"other: {v.kind}" else "other")
        head.append(f"<th class='rv-kind {kind_class}' data-kind='{esc(v.kind)}'>{esc(v.column)}</th>")
        texts.append(f"<td class='rv-text' data-kind='{esc(v.kind)}'>{_text_html(v)}</td>")
        scores = "".join(
            f"<div class='rv-score' title='{esc(model)}{' (caption truncated at 77 tokens)' if cut else ''}'>"
            f"{'CLIP-S' if metric == 'clip_score' else esc(metric)} {value:.1f}"
            f"{' ✂' if cut else ''} <span class='rv-score-model'>{esc(model)}</span></div>"
            for metric, value, model, cut in v.scores
        )
        counts.append(
            f"<td class='rv-counts'><span>{v.words} words · {v.clip_tokens} CLIP tokens</span> {_badge(v)}{scores}"
            f"{truth_html(v)}</td>"
        )
        status = f"<span class='rv-status rv-status-{esc(v.status)}'>{esc(v.status)}</span>"
        origins.append(f"<td class='rv-origin'>{status} {esc(v.origin)}</td>")
    return (
        "<div class='rv-variants-wrap'><table class='rv-variants'>"
        f"<thead><tr>{''.join(head)}</tr></thead><tbody>"
        f"<tr>{''.join(texts)}</tr><tr>{''.join(counts)}</tr><tr>{''.join(origins)}</tr>"
        "</tbody></table></div>"
        + (
            f"<div class='rv-note'><span class='rv-cut'>struck-through grey text</span> lies past CLIP's "
            f"{CONTEXT_LENGTH}-token context: CLIP and the SD text encoder never read it.</div>"
            if any(v.truncated for v in detail.variants)
            else ""
        )
    )


def image_meta_md(detail: ImageDetail) -> str:
    return (
        f"**#{detail.image_id}** `{detail.original_key}` · {detail.width}×{detail.height} px · "
        f"dataset **{detail.dataset}** · {len(detail.variants)} caption variants"
    )


def diff_html(a_label: str | None, b_label: str | None, texts: dict[str, str] | None) -> str:
    texts = texts or {}
    if not a_label or not b_label or a_label not in texts or b_label not in texts:
        return EMPTY_DIFF
    a, b = texts[a_label], texts[b_label]
    shared = diff_ratio(a, b) * 100
    return (
        "<div class='rv-diff'>"
        f"<div class='rv-diff-head'><b>{esc(a_label)}</b> → <b>{esc(b_label)}</b> · "
        f"{shared:.0f}% of words in common · <del>removed</del> <ins>added</ins></div>"
        f"<div class='rv-diff-body'>{word_diff_html(a, b)}</div></div>"
    )


def _default_pair(labels: list[str], detail: ImageDetail) -> tuple[str | None, str | None]:
    """Alt-text against the richest other variant (recap long, human long, …) by default."""
    if not labels:
        return None, None
    first = labels[0]
    preference = ("recap_long", "human_long", "recap_short", "human_short")
    for kind in preference:
        for v in detail.variants:
            if v.kind == kind and v.label != first:
                return first, v.label
    return first, labels[1] if len(labels) > 1 else first


# --------------------------------------------------------------------------- statistics


def stats_summary_html(dataset: str, stats: dict[str, Any], limit: int) -> str:
    if not stats:
        return f"<div class='rv-empty'>Dataset <b>{esc(dataset)}</b> has no captions yet.</div>"
    rows = []
    sampled = False
    for kind, st in stats.items():
        sampled = sampled or st.count >= limit
        trunc = 100.0 * st.truncated / st.count if st.count else 0.0
        # machine captions whose generation stopped at max_new_tokens (cut); "—" where not recorded
        cut = st.hit_limit_fraction
        cut_cell = "—" if cut is None else f"{100.0 * cut:.1f}% <small>({st.hit_limit:,})</small>"
        rows.append(
            f"<tr><td><span class='rv-dot rv-k-{esc(kind) if kind in plots.KIND_COLORS else 'other'}'></span>"
            f"{esc(kind_label(kind))}</td><td>{st.count:,}</td><td>{st.mean_words:.1f}</td>"
            f"<td>{st.mean_tokens:.1f}</td><td>{trunc:.1f}%</td><td>{st.vocabulary_size:,}</td>"
            f"<td class='rv-cut'>{cut_cell}</td></tr>"
        )
    note = (
        f"<div class='rv-note'>Statistics read the first {limit:,} captions of each kind.</div>"
        if sampled
        else ""
    )
    return (
        f"<div class='rv-stats-title'>Statistics of <b>{esc(dataset)}</b></div>"
        "<table class='rv-stats'><thead><tr><th>kind</th><th>captions</th><th>mean words</th>"
        f"<th>mean CLIP tokens</th><th>past {CONTEXT_LENGTH} tokens</th><th>vocabulary</th>"
        "<th title='generation stopped at the token limit (max_new_tokens), not at an end token'>"
        "cut at token limit</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
    )


def junk_html(stats: dict[str, Any]) -> str:
    alt = stats.get("alttext")
    if alt is None or not alt.count:
        return "<div class='rv-empty'>No alt-text in this dataset, so no junk check.</div>"
    share = 100.0 * alt.junk / alt.count
    head = (
        f"<div class='rv-junk-head'><b>{share:.1f}%</b> of alt-text looks like junk "
        f"({alt.junk:,} of {alt.count:,}): file names, URLs, adverts, placeholders, stock boilerplate.</div>"
    )
    if not alt.junk_examples:
        return head
    rows = "".join(
        f"<tr><td class='rv-junk-text'>{esc(text)}</td><td>{esc(reason)}</td></tr>"
        for text, reason in alt.junk_examples
    )
    return f"{head}<table class='rv-junk'><thead><tr><th>example alt-text</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>"


# all an annotator reads about a dataset under an open campaign (not even its name back)
BLINDED_MESSAGE = "This dataset is being judged blind in the Arena; it opens again when the campaign closes."


def compute_stats(
    ws: Workspace,
    dataset: str | None,
    limit: int | float | None = STATS_LIMIT,
    *,
    viewer: Viewer = EVERYONE,
    hidden: set[str] | frozenset[str] = frozenset(),
) -> tuple[Any, ...]:
    """(summary HTML, length histogram, vocabulary chart, top words chart, junk HTML).

    ``hidden``: datasets this user gets nothing about but :data:`BLINDED_MESSAGE`;
    ``viewer``: whose captions count (:mod:`backend.visibility`).
    """
    from backend.caption_stats import dataset_caption_stats, sample_limit

    limit = sample_limit(limit or STATS_LIMIT)  # capped here, on the server, whatever the page sent
    if not dataset or dataset in hidden:
        empty = (
            f"<div class='rv-empty'>{BLINDED_MESSAGE}</div>"
            if dataset
            else "<div class='rv-empty'>Choose a dataset.</div>"
        )
        nothing = gr.update(value=None, visible=False)
        return empty, nothing, nothing, nothing, ""
    try:
        stats = dataset_caption_stats(ws, dataset, limit=limit, viewer=viewer)
    except DatasetNotFound as exc:
        raise gr.Error(str(exc)) from None
    title = f"Caption length by kind — {dataset}"
    return (
        stats_summary_html(dataset, stats, limit),
        gr.update(value=plots.length_histogram(stats, title=title), visible=True),
        gr.update(value=plots.vocabulary_chart(stats), visible=True),
        gr.update(value=plots.top_words_chart(stats), visible=True),
        junk_html(stats),
    )


@dataclass
class StatsSection:
    dataset: gr.Dropdown
    limit: gr.Number
    button: gr.Button
    outputs: list[gr.components.Component]
    compute: Callable[..., tuple[Any, ...]]

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.dataset, self.limit]


def build_stats_section(
    ws: Workspace, dataset: gr.Dropdown | None = None, prefix: str = "", histogram_id: str | None = None
) -> StatsSection:
    """Summary table, length histograms (words and CLIP tokens with the 77 line), vocabulary,
    top words and junk alt-text of the dataset chosen in ``dataset`` (a dropdown of its
    own is made when none is given).

    Element ids: ``{prefix}stats-summary``, ``{prefix}length-histogram`` (or ``histogram_id``)
    etc., so two tabs can each hold one.
    """
    from backend.caption_stats import MAX_STATS_SAMPLE

    with gr.Row(equal_height=True, elem_classes=["rv-stats-controls"]):
        if dataset is None:
            dataset = gr.Dropdown(label="Dataset", choices=[], scale=3, elem_id=f"{prefix}stats-dataset")
        limit = gr.Number(
            value=STATS_LIMIT,
            precision=0,
            minimum=100,
            maximum=MAX_STATS_SAMPLE,
            label="Captions read per kind (caps the work on huge datasets)",
            scale=2,
            elem_id=f"{prefix}stats-limit",
        )
        button = gr.Button("Compute statistics", scale=1, min_width=160, elem_id=f"{prefix}stats-button")
    summary = gr.HTML(
        "<div class='rv-empty'>Statistics are computed on request (they read every caption up to the cap).</div>",
        elem_id=f"{prefix}stats-summary",
    )
    hist = gr.Plot(
        visible=False,
        label="Caption length (Recap-DataComp Fig. 3 style)",
        elem_id=histogram_id or f"{prefix}length-histogram",
    )
    vocab = gr.Plot(
        visible=False, label="Vocabulary and CLIP truncation", elem_id=f"{prefix}vocabulary-chart"
    )
    words = gr.Plot(visible=False, label="Most frequent words", elem_id=f"{prefix}top-words-chart")
    junk = gr.HTML(elem_id=f"{prefix}junk-alttext")
    outputs = [summary, hist, vocab, words, junk]

    def compute(dataset_name: str | None, cap: Any, request: gr.Request) -> tuple[Any, ...]:
        return compute_stats(
            ws,
            dataset_name,
            cap,
            viewer=access.viewer(ws, request),
            hidden=access.hidden_datasets(ws, request),
        )

    button.click(compute, [dataset, limit], outputs, api_visibility="private")
    return StatsSection(dataset=dataset, limit=limit, button=button, outputs=outputs, compute=compute)


# --------------------------------------------------------------------------- the tab


def pick_dataset(names: list[str], current: str | None) -> str | None:
    if current in names:
        return current
    if PREFERRED_DATASET in names:
        return PREFERRED_DATASET
    return names[0] if names else None


@dataclass
class DetailPane:
    """The opened image, its caption variants side by side and a word diff of two of them."""

    image: gr.Image
    meta: gr.Markdown
    variants: gr.HTML
    diff_a: gr.Dropdown
    diff_b: gr.Dropdown
    diff: gr.HTML


def detail_pane() -> DetailPane:
    """The detail pane under the gallery, empty until an image is opened."""
    with gr.Group(elem_id="rv-detail"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=220):
                image = gr.Image(
                    label="Image",
                    type="filepath",
                    interactive=False,
                    height=280,
                    elem_id="rv-image",
                    buttons=["fullscreen"],
                )
                meta = gr.Markdown("", elem_id="rv-image-meta")
            with gr.Column(scale=4):
                variants = gr.HTML(EMPTY_VARIANTS, elem_id="variants")
        with gr.Row(equal_height=True, elem_id="rv-diff-row"):
            diff_a = gr.Dropdown(label="Diff: from", choices=[], scale=1, elem_id="diff-a")
            diff_b = gr.Dropdown(label="to", choices=[], scale=1, elem_id="diff-b")
        diff = gr.HTML(EMPTY_DIFF, elem_id="diff")
    return DetailPane(image=image, meta=meta, variants=variants, diff_a=diff_a, diff_b=diff_b, diff=diff)


def wire_detail(
    ws: Workspace, pane: DetailPane, gallery: gr.Gallery, ids_state: gr.State, texts_state: gr.State
) -> None:
    """A gallery click opens the image (checked against what the user may see); the two
    dropdowns pick the variants to diff."""
    detail_outputs = [pane.image, pane.meta, pane.variants, pane.diff_a, pane.diff_b, pane.diff, texts_state]

    def open_image(ids: list[int], evt: gr.SelectData, request: gr.Request):
        index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        if not isinstance(index, int) or not 0 <= index < len(ids):
            return no_change(len(detail_outputs))
        try:
            detail = image_variants(ws, ids[index], viewer=access.viewer(ws, request))
        except ReviewError as exc:
            raise gr.Error(str(exc)) from None
        # a campaign may have opened after the gallery was loaded
        if detail.dataset in access.hidden_datasets(ws, request):
            raise gr.Error(BLINDED_MESSAGE)
        try:  # admins see the stored original; annotators its pixels only (no provenance chunk)
            shown: Any = detail.path if is_admin(ws, request) else access.pixels_only(detail.path)
        except OSError as exc:
            raise gr.Error(f"Cannot read image #{detail.image_id}: {exc}") from None
        labels = [v.label for v in detail.variants]
        texts = {v.label: v.text for v in detail.variants}
        a, b = _default_pair(labels, detail)
        return (
            shown,
            image_meta_md(detail),
            variants_html(detail),
            gr.update(choices=labels, value=a),
            gr.update(choices=labels, value=b),
            diff_html(a, b, texts),
            texts,
        )

    gallery.select(open_image, ids_state, detail_outputs, api_visibility="private")

    def show_diff(a: str | None, b: str | None, texts: dict[str, str]) -> str:
        return diff_html(a, b, texts)

    for dd in (pane.diff_a, pane.diff_b):
        dd.input(
            show_diff,
            [pane.diff_a, pane.diff_b, texts_state],
            pane.diff,
            api_visibility="private",
            queue=False,
        )


@dataclass
class VisibilitySection:
    """The admin switch: may annotators read every caption (see :mod:`backend.visibility`)?"""

    box: gr.Accordion
    see_all: gr.Checkbox
    note: gr.Markdown


def visibility_section() -> VisibilitySection:
    """The admin switch, hidden until the page load finds an admin."""
    with gr.Accordion(
        "Who reads which captions (admin)", open=False, visible=False, elem_id="rv-visibility"
    ) as visibility_box:
        see_all = gr.Checkbox(
            value=False,
            label="Annotators may read every caption, other annotators' unreviewed ones included",
            info=(
                "Off (the default): an annotator reads captions no annotator wrote, approved human "
                "captions and their own, so each human caption stays an independent reading of its image."
            ),
            elem_id="rv-see-all",
        )
        see_all_note = gr.Markdown(elem_id="rv-see-all-note")
    return VisibilitySection(box=visibility_box, see_all=see_all, note=see_all_note)


def wire_visibility(ws: Workspace, blocks: gr.Blocks, section: VisibilitySection) -> None:
    """Shown to admins on load; its switch is an admin action with an ``api_name``."""

    def visibility_view(request: gr.Request) -> tuple[Any, Any]:
        if not is_admin(ws, request):
            return gr.update(visible=False), gr.skip()
        return gr.update(visible=True), gr.update(value=annotators_see_all_captions(ws))

    blocks.load(visibility_view, None, [section.box, section.see_all], api_visibility="private")

    def set_visibility(on: bool, request: gr.Request) -> str:
        require_admin_ui(ws, request)
        set_annotators_see_all_captions(ws, bool(on))
        return (
            "Annotators now read **every** caption."
            if on
            else "Annotators now read captions no annotator wrote, approved human captions and their own."
        )

    section.see_all.input(set_visibility, section.see_all, section.note, api_name="review_caption_visibility")


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    """The Review tab: filters, one gallery page, the opened image, statistics, caption visibility."""
    tab = parent_tab()
    page_state = gr.State(0)
    ids_state = gr.State([])
    texts_state = gr.State({})
    stats_open = gr.State(False)

    with gr.Row(elem_id="rv-filters", equal_height=True):
        dataset = gr.Dropdown(label="Dataset", choices=[], value=None, scale=2, elem_id="rv-dataset")
        has_kinds = gr.Dropdown(
            label="Has caption kinds",
            choices=[],
            multiselect=True,
            scale=2,
            elem_id="rv-has",
        )
        missing_kinds = gr.Dropdown(
            label="Missing caption kinds",
            choices=[],
            multiselect=True,
            scale=2,
            elem_id="rv-missing",
        )
        search = gr.Textbox(
            label="Search caption text",
            placeholder="words in any current caption (Enter)",
            scale=3,
            elem_id="rv-search",
        )
        page_size = gr.Dropdown(
            label="Per page", choices=PAGE_SIZES, value=DEFAULT_PAGE_SIZE, scale=1, elem_id="rv-page-size"
        )
    with gr.Row(elem_id="rv-pager", equal_height=True):
        prev_btn = gr.Button("◀ Previous page", size="sm", scale=0, elem_id="rv-prev", interactive=False)
        page_info = gr.Markdown("", elem_id="rv-page-info")
        next_btn = gr.Button("Next page ▶", size="sm", scale=0, elem_id="rv-next", interactive=False)
    gallery = gr.Gallery(
        label="Images (click one to compare its captions)",
        columns=8,
        height="auto",
        allow_preview=False,
        fit_columns=False,
        object_fit="contain",
        interactive=False,
        elem_id="review-gallery",
        buttons=[],
    )
    detail = detail_pane()
    with gr.Accordion("Statistics", open=False, elem_id="rv-stats") as stats_acc:
        stats = build_stats_section(ws, dataset, prefix="rv-", histogram_id="length-histogram")
    visibility = visibility_section()

    # ------------------------------------------------------------------ handlers

    page_outputs = [gallery, ids_state, page_state, page_info, prev_btn, next_btn]

    def hidden_from(request: gr.Request | None) -> set[str]:
        """Datasets this user may not browse: for annotators, those an open Arena campaign judges."""
        return access.hidden_datasets(ws, request)

    def load_page(
        name: str | None,
        has: list[str],
        missing: list[str],
        text: str,
        page: int,
        size: Any,
        request: gr.Request | None,
    ):
        if name and name in hidden_from(request):
            return (
                [],
                [],
                0,
                BLINDED_MESSAGE,
                gr.update(interactive=False),
                gr.update(interactive=False),
            )
        if not name:
            return (
                [],
                [],
                0,
                "No dataset yet: an admin imports one in the Datasets tab.",
                gr.update(interactive=False),
                gr.update(interactive=False),
            )
        try:
            gp = gallery_page(
                ws,
                name,
                has_kinds=has or [],
                missing_kinds=missing or [],
                search=text or "",
                page=int(page or 0),
                page_size=int(size or DEFAULT_PAGE_SIZE),
                viewer=access.viewer(ws, request),
            )
        except (DatasetNotFound, ReviewError) as exc:
            gr.Warning(str(exc))
            return [], [], 0, f"⚠️ {exc}", gr.update(interactive=False), gr.update(interactive=False)
        value = [(path, label) for _, path, label in gp.items]
        info = gp.describe() if gp.total else "No images match these filters."
        return (
            value,
            gp.image_ids,
            gp.page,
            info,
            gr.update(interactive=gp.page > 0),
            gr.update(interactive=gp.page < gp.pages - 1),
        )

    filters = [dataset, has_kinds, missing_kinds, search]

    def first_page(name, has, missing, text, size, request: gr.Request):  # noqa: ANN001, ANN202 - Gradio values
        return load_page(name, has, missing, text, 0, size, request)

    def step(delta: int) -> Callable[..., Any]:
        def go(name, has, missing, text, page, size, request: gr.Request):  # noqa: ANN001, ANN202 - Gradio values
            return load_page(name, has, missing, text, int(page or 0) + delta, size, request)

        return go

    for component in (dataset, has_kinds, missing_kinds, page_size):
        component.input(first_page, [*filters, page_size], page_outputs, api_visibility="private")
    search.submit(first_page, [*filters, page_size], page_outputs, api_visibility="private")
    prev_btn.click(step(-1), [*filters, page_state, page_size], page_outputs, api_visibility="private")
    next_btn.click(step(+1), [*filters, page_state, page_size], page_outputs, api_visibility="private")

    wire_detail(ws, detail, gallery, ids_state, texts_state)

    # statistics: computed when the accordion opens, and again on a dataset change while open
    def open_stats(name: str | None, cap: Any, request: gr.Request) -> tuple[Any, ...]:
        return (True, *stats.compute(name, cap, request))

    stats_acc.expand(
        open_stats, [dataset, stats.limit], [stats_open, *stats.outputs], api_visibility="private"
    )
    stats_acc.collapse(lambda: False, None, stats_open, api_visibility="private", queue=False)

    def stats_if_open(is_open: bool, name: str | None, cap: Any, request: gr.Request) -> tuple[Any, ...]:
        if not is_open:
            return no_change(len(stats.outputs))
        return stats.compute(name, cap, request)

    dataset.input(stats_if_open, [stats_open, dataset, stats.limit], stats.outputs, api_visibility="private")

    # ------------------------------------------------------------------ load / tab refresh

    def refresh(
        current: str | None,
        has: list[str],
        missing: list[str],
        text: str,
        page: int,
        size: Any,
        request: gr.Request,
    ):
        hidden = hidden_from(request)
        names = [n for n in dataset_names(ws) if n not in hidden]
        chosen = pick_dataset(names, current)
        kinds = caption_kinds(ws)
        kind_choices = [(kind_label(k), k) for k in kinds]
        keep_page = page if chosen == current else 0
        return (
            gr.update(choices=names, value=chosen),
            gr.update(choices=kind_choices),
            gr.update(choices=kind_choices),
            *load_page(chosen, has, missing, text, keep_page, size, request),
        )

    refresh_inputs = [dataset, has_kinds, missing_kinds, search, page_state, page_size]
    refresh_outputs = [dataset, has_kinds, missing_kinds, *page_outputs]
    blocks.load(refresh, refresh_inputs, refresh_outputs, api_visibility="private")
    if tab is not None:
        tab.select(refresh, refresh_inputs, refresh_outputs, api_visibility="private")

    wire_visibility(ws, blocks, visibility)
