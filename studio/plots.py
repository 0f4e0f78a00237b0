"""Matplotlib figures of caption statistics for ``gr.Plot``.

Figures are built with the object-oriented API on the Agg backend (no GUI, thread-safe
enough for Gradio's worker threads, never touches pyplot's global figure list); Gradio
renders each to an image and closes it. :func:`close` is there for callers that render
figures themselves (tests, scripts).

The length histogram follows Recap-DataComp's Figure 3: the distributions of every
caption kind overlaid on shared bins, as a share of that kind's captions so a kind with
100 captions and one with a million compare directly, and CLIP's 77-token context
marked on the token panel (text past it never reaches CLIP or the SD text encoder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from backend.clip_tokens import CONTEXT_LENGTH
from backend.review import kind_label, kind_sort_key

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def new_figure(**kwargs: Any) -> Figure:
    """A matplotlib ``Figure`` on the Agg backend; matplotlib is imported on the first plot.

    Why lazily: importing matplotlib costs about half a second, and the studio's first page
    draws no plot (bench/cold_start.py measures the start-up this saves).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(**kwargs)


KIND_COLORS = {
    "alttext": "#6b7280",
    "human_short": "#60a5fa",
    "human_long": "#1d4ed8",
    "recap_short": "#fbbf24",
    "recap_long": "#c2410c",
    "upsampled": "#7c3aed",
}
_OTHER_COLORS = ("#059669", "#db2777", "#0891b2", "#65a30d", "#9333ea", "#b45309")
LIMIT_COLOR = "#dc2626"
DPI = 100


class StatsLike(Protocol):
    """What the figures read from ``backend.caption_stats.KindStats``."""

    kind: str
    count: int
    word_counts: list[int]
    clip_token_counts: list[int]
    truncated: int
    vocabulary_size: int
    top_words: list[tuple[str, int]]


def kind_color(kind: str, index: int = 0) -> str:
    return KIND_COLORS.get(kind, _OTHER_COLORS[index % len(_OTHER_COLORS)])


def _ordered(stats: Mapping[str, StatsLike]) -> list[StatsLike]:
    return [stats[k] for k in sorted(stats, key=kind_sort_key) if stats[k].count > 0]


def _colors(items: Sequence[StatsLike]) -> list[str]:
    others = 0
    out = []
    for st in items:
        if st.kind in KIND_COLORS:
            out.append(KIND_COLORS[st.kind])
        else:
            out.append(kind_color(st.kind, others))
            others += 1
    return out


def message_figure(message: str, size: tuple[float, float] = (11, 3.2)) -> Figure:
    """A figure that only says ``message`` (grey, centred): what a plot shows with nothing to plot."""
    fig = new_figure(figsize=size, dpi=DPI)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#6b7280")
    ax.set_axis_off()
    return fig


def _bins(values: list[np.ndarray], at_least: int = 0, max_bins: int = 40) -> np.ndarray:
    """Shared integer-aligned bins from 0 to the 99.5th percentile (long tails clipped)."""
    top = max([at_least] + [int(np.percentile(v, 99.5)) for v in values if v.size])
    top = max(top, 1) + 1
    width = max(1, int(np.ceil(top / max_bins)))
    return np.arange(0, top + width, width)


def length_histogram(stats: Mapping[str, StatsLike], title: str = "") -> Figure:
    """Caption length per kind, in words and in CLIP tokens (with the 77-token line)."""
    items = _ordered(stats)
    if not items:
        return message_figure("No captions to plot yet")
    colors = _colors(items)
    fig = new_figure(figsize=(11, 3.6), dpi=DPI, layout="constrained")
    ax_words, ax_tokens = fig.subplots(1, 2)
    panels = (
        (ax_words, [np.asarray(st.word_counts) for st in items], "words per caption", 0),
        (
            ax_tokens,
            [np.asarray(st.clip_token_counts) for st in items],
            "CLIP tokens per caption",
            CONTEXT_LENGTH + 8,
        ),
    )
    for ax, values, xlabel, at_least in panels:
        bins = _bins(values, at_least)
        for st, v, color in zip(items, values, colors, strict=True):
            if not v.size:
                continue
            weights = np.full(v.size, 100.0 / v.size)
            clipped = np.clip(v, bins[0], bins[-1] - 1e-9)  # the clipped tail lands in the last bin
            ax.hist(clipped, bins=bins, weights=weights, histtype="stepfilled", alpha=0.28, color=color)
            ax.hist(
                clipped,
                bins=bins,
                weights=weights,
                histtype="step",
                linewidth=1.6,
                color=color,
                label=f"{kind_label(st.kind)} (n={v.size:,}, mean {v.mean():.1f})",
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("% of that kind's captions")
        ax.set_xlim(bins[0], bins[-1])
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    right = ax_tokens.get_xlim()[1]
    ax_tokens.axvspan(
        CONTEXT_LENGTH, max(right, CONTEXT_LENGTH + 1), color=LIMIT_COLOR, alpha=0.06, linewidth=0
    )
    ax_tokens.axvline(CONTEXT_LENGTH, color=LIMIT_COLOR, linestyle="--", linewidth=1.4)
    ax_tokens.set_title(
        f"red line: CLIP's {CONTEXT_LENGTH}-token limit (shaded part is cut off)",
        fontsize=9,
        color=LIMIT_COLOR,
    )
    ax_words.set_title("overlaid per kind, as a share of that kind's captions", fontsize=9, color="#4b5563")
    ax_words.legend(fontsize=8.5, frameon=False)
    fig.suptitle(title or "Caption length by kind", fontsize=11)
    return fig


def vocabulary_chart(stats: Mapping[str, StatsLike]) -> Figure:
    """Vocabulary size (distinct words) and the share of captions past 77 CLIP tokens, per kind."""
    items = _ordered(stats)
    if not items:
        return message_figure("No captions to plot yet", (11, 2.6))
    colors = _colors(items)
    labels = [kind_label(st.kind) for st in items]
    height = 1.5 + 0.38 * len(items)
    fig = new_figure(figsize=(11, height), dpi=DPI, layout="constrained")
    ax_vocab, ax_trunc = fig.subplots(1, 2)
    y = np.arange(len(items))
    vocab = [st.vocabulary_size for st in items]
    trunc = [100.0 * st.truncated / st.count for st in items]
    ax_vocab.barh(y, vocab, color=colors)
    ax_trunc.barh(y, trunc, color=colors)
    for ax, values, fmt, xlabel in (
        (ax_vocab, vocab, "{:,.0f}", "vocabulary size (distinct words)"),
        (ax_trunc, trunc, "{:.1f}%", f"captions past CLIP's {CONTEXT_LENGTH} tokens"),
    ):
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.spines[["top", "right"]].set_visible(False)
        top = max(values) if max(values) > 0 else 1
        ax.set_xlim(0, top * 1.18)
        for yi, v in zip(y, values, strict=True):
            ax.text(v + top * 0.01, yi, fmt.format(v), va="center", fontsize=8.5)
    ax_trunc.set_xlim(0, max(max(trunc) * 1.18, 10))
    fig.suptitle("Vocabulary and CLIP truncation per kind", fontsize=11)
    return fig


def top_words_chart(stats: Mapping[str, StatsLike], n: int = 12) -> Figure:
    """The most frequent content words of each kind, one small panel per kind."""
    items = [st for st in _ordered(stats) if st.top_words]
    if not items:
        return message_figure("No words to plot yet", (11, 2.6))
    colors = _colors(items)
    cols = min(len(items), 3)
    rows = int(np.ceil(len(items) / cols))
    fig = new_figure(figsize=(11, 0.45 + rows * (0.22 * n + 0.6)), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, st, color in zip(axes, items, colors, strict=False):
        words = st.top_words[:n]
        y = np.arange(len(words))
        ax.barh(y, [c for _, c in words], color=color)
        ax.set_yticks(y, [w for w, _ in words], fontsize=8.5)
        ax.invert_yaxis()
        ax.set_title(kind_label(st.kind), fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[len(items) :]:
        ax.set_axis_off()
    fig.suptitle("Most frequent words (stop words removed)", fontsize=11)
    return fig


def close(fig: Figure) -> None:
    """Release a figure that was not handed to Gradio (Figure objects are not in pyplot's registry)."""
    fig.clear()
