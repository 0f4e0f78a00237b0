"""The Runs tab's detail view of one run: header, log, loss curves, metrics, samples, artifacts, config.

Why its own module: the view is most of the tab's drawing and all of its change detection. Each
part carries a signature (a ``gr.State``) of what it shows, so the tab's timer re-sends only what
changed — no flicker, no reset scroll position, little traffic. The light part (header, log,
buttons) is cheap and compared by content; the heavy part (curves, metrics, samples, artifacts)
is redrawn only when :func:`signature` says the run produced something new.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from backend import jobs
from backend.jobs import configs
from backend.workspace import Workspace
from studio import access, run_forms
from studio.ui_common import int_or_none, status_badge

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOG_LINES = 200
SELECT_PROMPT = "<p>Select a run in the table (or type its id) to see its log, curves and samples.</p>"


# --------------------------------------------------------------------------- rendering


def progress_html(run: jobs.Run) -> str:
    share = run_forms.fraction(run)
    bar = (
        f'<progress max="1000" value="{int(share * 1000)}"></progress>'
        if share is not None
        else "<progress></progress>"
    )
    return f"{bar} {html.escape(run_forms.progress_text(run))}"


def header_html(ws: Workspace, run: jobs.Run | None) -> str:
    if run is None:
        return SELECT_PROMPT
    facts = [
        ("Status", status_badge(run.status)),
        ("Progress", progress_html(run)),
        ("Rate", html.escape(run_forms.fmt_rate(run.rate) if run.status == "running" else "—")),
        ("ETA", html.escape(run_forms.fmt_eta(run))),
        ("Started", html.escape(run_forms.fmt_when(run.started_at))),
        ("Finished", html.escape(run_forms.fmt_when(run.finished_at))),
        ("Elapsed", html.escape(run_forms.fmt_duration(run_forms.elapsed_s(run)))),
        ("Attempt", str(run.attempt)),
        ("Created by", html.escape(run_forms.creator_name(ws, run) or "CLI")),
        ("Folder", f"<code>{html.escape(run.output_dir)}</code>"),
    ]
    cells = "".join(f"<b>{k}</b><span>{v}</span>" for k, v in facts)
    parts = [f"<h3>Run #{run.id} · {html.escape(run.kind)}</h3>"]
    summary = run_summary(run)
    if summary:
        parts.append(f'<p class="run-summary">{html.escape(summary)}</p>')
    parts.append(f'<div class="run-facts">{cells}</div>')
    if run.status == jobs.RunStatus.failed.value and run.message:
        parts.append(
            f'<p><b>It failed.</b> The error\'s last lines:</p><pre class="run-error" id="run-error">'
            f"{html.escape(run.message)}</pre>"
        )
    elif run.status == jobs.RunStatus.interrupted.value:
        parts.append(f'<p class="run-note">{html.escape(run.message)}</p>')
    elif run.message:
        parts.append(f"<p><b>Message:</b> {html.escape(run.message)}</p>")
    return "\n".join(parts)


def run_summary(run: jobs.Run) -> str:
    """The kind's one line about the run's config (today's defaults fill keys an old run lacks)."""
    kind = configs.KINDS.get(run.kind)
    if kind is None:
        return ""
    try:
        return kind.summary({**configs.DEFAULTS[run.kind], **(run.config or {})})
    except (KeyError, TypeError, ValueError):  # a hand-made config (tests, older studios)
        return ""


def loss_figure(ws: Workspace, run_id: int) -> Figure | None:
    """train_loss / val_loss against step; None when the run has no loss yet."""
    series = {name: run_forms.metric_series(ws, run_id, name) for name in run_forms.LOSS_METRICS}
    series = {name: xy for name, xy in series.items() if xy[0]}
    if not series:
        return None
    from matplotlib.figure import Figure  # only when there is a curve to draw: the page starts faster

    fig = Figure(figsize=(7, 3.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for name, (steps, values) in series.items():
        ax.plot(steps, values, marker="o" if len(steps) < 40 else None, markersize=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def metrics_rows(ws: Workspace, run_id: int) -> list[list[Any]]:
    return [
        [m.name, m.count, f"{m.first_step}–{m.last_step}", f"{m.last:.4g}", f"{m.low:.4g}", f"{m.high:.4g}"]
        for m in run_forms.metric_summaries(ws, run_id)
    ]


def samples_html(ws: Workspace, run: jobs.Run, step: int | None) -> str:
    if step is None:
        return "<p>No validation samples yet (a fine-tune writes them at every evaluation).</p>"
    samples = run_forms.load_samples(ws, run, step)
    if not samples:
        return f"<p>No samples in step {step}.</p>"
    if any(run_forms.is_t2i_sample(sample) for sample in samples):
        return t2i_samples_html(ws, run, step, samples)
    rows = []
    for sample in samples[: run_forms.MAX_SAMPLES_SHOWN]:
        path = run_forms.sample_image_file(ws, sample)
        image = f'<img src="/gradio_api/file={html.escape(str(path))}" alt="">' if path else ""
        rows.append(
            f"<tr><td>{image}<br><small>image {html.escape(str(sample.get('image_id', '')))}</small></td>"
            f"<td>{html.escape(str(sample.get('human', '')))}</td>"
            f'<td class="gen">{html.escape(str(sample.get("generated", "")))}</td></tr>'
        )
    return (
        f"<p>Validation captions at step {step}: generated next to the held-out human caption.</p>"
        '<table class="run-samples"><tr><th>image</th><th>human</th><th>generated</th></tr>'
        + "".join(rows)
        + "</table>"
        + _more_note(len(samples), step)
    )


def t2i_samples_html(ws: Workspace, run: jobs.Run, step: int, samples: list[dict[str, Any]]) -> str:
    """Validation images of a text-to-image fine-tune: prompt, seed and the image rendered at ``step``.

    Images under the workspace's ``images/`` are linked like any served file; ones a job left
    in its run folder (not served) are inlined as small PNGs (a few dozen per step at most).
    """
    rows = []
    for sample in samples[: run_forms.MAX_SAMPLES_SHOWN]:
        path = run_forms.sample_run_image(ws, run, sample)
        uri = None
        if path is not None:  # a served file by URL; one in the run folder inlined
            served = any(path.is_relative_to(root) for root in run_forms.served_folders(ws))
            uri = f"/gradio_api/file={html.escape(str(path))}" if served else run_forms.image_data_uri(path)
        image = (
            f'<img class="t2i" src="{uri}" alt="{html.escape(str(sample.get("prompt", "")))}">'
            if uri
            else "<small>(image missing)</small>"
        )
        rows.append(
            f"<tr><td>{image}</td><td>{html.escape(str(sample.get('prompt', '')))}</td>"
            f"<td>{html.escape(str(sample.get('seed', '')))}</td></tr>"
        )
    return (
        f"<p>Validation images at step {step}: the same prompts and seeds at every evaluation, so "
        "steps compare directly.</p>"
        '<table class="run-samples t2i-samples"><tr><th>image</th><th>prompt</th><th>seed</th></tr>'
        + "".join(rows)
        + "</table>"
        + _more_note(len(samples), step)
    )


def _more_note(count: int, step: int) -> str:
    more = count - run_forms.MAX_SAMPLES_SHOWN
    return f"<p>… and {more} more in <code>samples/step_{step}.json</code></p>" if more > 0 else ""


def outputs_html(ws: Workspace, run: jobs.Run) -> str:
    """Below the metrics, what the T2I runs produced: a fine-tune's caption usage, a generation's
    dataset, an evaluation's numbers per checkpoint × regime."""
    if run.kind == "t2i_train":
        return usage_html(ws, run)
    if run.kind == "generate":
        name = run_forms.generated_dataset_name(run)
        n = run_forms.generated_image_count(ws, run)
        return (
            f"<p><b>Generated images:</b> {n} in dataset <code>{html.escape(name)}</code> "
            "(browse them in Review; evaluate them with <i>Evaluate generated images</i>).</p>"
        )
    if run.kind == "t2i_eval":
        records = run_forms.eval_records(ws, int(run.id))  # type: ignore[arg-type]
        if not records:
            return "<p><i>Metrics appear here when the evaluation finishes.</i></p>"
        rows = "".join(
            f"<tr><td>{html.escape(r['checkpoint'])}</td><td>{html.escape(r['regime'])}</td>"
            f"<td>{html.escape(r['metric'])}</td><td>{html.escape(run_forms.fmt_metric(r))}</td></tr>"
            for r in records
        )
        return (
            "<h4>Automatic metrics</h4>"
            '<table class="run-samples" id="run-eval-table"><tr><th>checkpoint</th><th>regime</th>'
            f"<th>metric</th><th>value ± stderr (n)</th></tr>{rows}</table>"
            "<p>Compare checkpoints and regimes in <b>Results → Automatic metrics</b>.</p>"
        )
    return ""


def usage_html(ws: Workspace, run: jobs.Run) -> str:
    """What a text-to-image fine-tune was trained on: caption condition, mix, and the caption
    kinds actually fed to the text encoder (artifact meta ``usage``)."""
    artifact = run_forms.t2i_artifact(ws, int(run.id))  # type: ignore[arg-type]
    if artifact is None:
        return "<p><i>Caption kinds used appear here when the fine-tune finishes.</i></p>"
    meta = artifact.meta or {}
    usage = run_forms.t2i_usage(ws, int(run.id))  # type: ignore[arg-type]
    total = sum(usage.values()) or 1
    rows = "".join(
        f"<tr><td>{html.escape(kind)}</td><td>{n}</td><td>{100 * n / total:.1f}%</td></tr>"
        for kind, n in sorted(usage.items(), key=lambda kv: -kv[1])
    )
    mix = meta.get("mix") or {}
    weights = ", ".join(f"{k} {float(w):.2f}" for k, w in (mix.get("weights") or {}).items())
    facts = [
        ("Caption condition", meta.get("caption_condition") or "—"),
        ("Mix", f"{mix.get('name') or run.config.get('mix', '')} ({weights})" if weights else "—"),
        ("Empty-caption probability", str(mix.get("empty_prob", run.config.get("empty_prob", "—")))),
        ("Training images", str(meta.get("training_images", "—"))),
        ("Captions truncated at 77 tokens", str(meta.get("truncated_captions", "—"))),
    ]
    captioners = meta.get("captioners") or {}
    if captioners:
        facts.append(
            ("Captioners", "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in captioners.items()))
        )
    fact_html = "".join(f"<b>{html.escape(k)}</b><span>{html.escape(v)}</span>" for k, v in facts)
    return (
        "<h4>Caption kinds used in training</h4>"
        f'<div class="run-facts">{fact_html}</div>'
        '<table class="run-samples" id="run-usage-table"><tr><th>caption kind</th><th>examples</th>'
        f"<th>share</th></tr>{rows}</table>"
    )


def artifacts_rows(ws: Workspace, run_id: int) -> list[list[Any]]:
    return [[a["id"], a["kind"], a["name"], a["path"]] for a in run_forms.artifact_records(ws, run_id)]


def signature(ws: Workspace, run: jobs.Run | None) -> str:
    """Changes whenever the heavy parts of the detail view would: redraw only then."""
    if run is None:
        return ""
    metrics = sum(m.count for m in run_forms.metric_summaries(ws, int(run.id)))  # type: ignore[arg-type]
    steps = run_forms.sample_steps(ws, run)
    artifacts = len(jobs.list_artifacts(ws, run_id=run.id))
    return (
        f"{run.id}:{run.status}:{run.attempt}:{metrics}:{steps[-1] if steps else -1}:{len(steps)}:{artifacts}"
    )


def digest(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode("utf-8"), usedforsecurity=False).hexdigest()


def get_run(ws: Workspace, run_id: Any) -> jobs.Run | None:
    rid = int_or_none(run_id)
    if rid is None:
        return None
    try:
        return jobs.get_run(ws, rid)
    except jobs.RunNotFound:
        return None


# --------------------------------------------------------------------------- the view


@dataclass
class DetailView:
    """The detail section's components and what fills them (see the module docstring)."""

    ws: Workspace
    run_id: gr.Textbox
    open_btn: gr.Button
    actions: gr.Row
    cancel_btn: gr.Button
    resume_btn: gr.Button
    action_result: gr.Markdown
    header: gr.HTML
    sig: gr.State
    light_sig: gr.State
    log_box: gr.Textbox
    curves: gr.Plot
    curves_note: gr.Markdown
    metrics: gr.Dataframe
    usage_view: gr.HTML
    sample_step: gr.Dropdown
    samples: gr.HTML
    artifacts: gr.Dataframe
    config_view: gr.JSON

    @property
    def light_outputs(self) -> list[Any]:
        return [self.light_sig, self.header, self.log_box, self.cancel_btn, self.resume_btn]

    @property
    def heavy_outputs(self) -> list[Any]:
        return [
            self.sig,
            self.curves,
            self.curves_note,
            self.metrics,
            self.usage_view,
            self.sample_step,
            self.samples,
            self.artifacts,
            self.config_view,
        ]

    @property
    def outputs(self) -> list[Any]:
        return [self.run_id, *self.light_outputs, *self.heavy_outputs]

    def light(self, run: jobs.Run | None, old_sig: str = "") -> tuple[Any, ...]:
        text = jobs.log_tail(self.ws, int(run.id), LOG_LINES) if run is not None else ""  # type: ignore[arg-type]
        head = header_html(self.ws, run)
        new_sig = digest(head, text, run.status if run else "")
        if new_sig == old_sig:
            return (old_sig, *[gr.skip()] * (len(self.light_outputs) - 1))
        active = run is not None and run.status in jobs.ACTIVE
        resumable = run is not None and run.status in jobs.RESUMABLE
        return (
            new_sig,
            head,
            text or "(no log yet)",
            gr.update(visible=active),
            gr.update(visible=resumable),
        )

    def heavy(self, run: jobs.Run | None, old_sig: str, step: Any = None) -> tuple[Any, ...]:
        new_sig = signature(self.ws, run)
        if new_sig == old_sig and run is not None:
            return (old_sig, *[gr.skip()] * (len(self.heavy_outputs) - 1))
        if run is None:
            return (new_sig, None, "", [], "", gr.update(choices=[], value=None), "", [], None)
        rid = int(run.id)  # type: ignore[arg-type]
        figure = loss_figure(self.ws, rid)
        steps = run_forms.sample_steps(self.ws, run)
        chosen = int_or_none(step) if int_or_none(step) in steps else (steps[-1] if steps else None)
        note = (
            "" if figure is not None else "_No loss values yet (fine-tune runs log train_loss and val_loss)._"
        )
        return (
            new_sig,
            figure,
            note,
            metrics_rows(self.ws, rid),
            outputs_html(self.ws, run),
            gr.update(choices=[(f"step {s}", s) for s in reversed(steps)], value=chosen),
            samples_html(self.ws, run, chosen),
            artifacts_rows(self.ws, rid),
            run.config,
        )

    def show(self, rid: Any, old_sig: str = "", step: Any = None, request: gr.Request | None = None) -> tuple:
        """Every output of the view for run ``rid`` (``request``: the events anyone can call pass
        theirs, so annotators get nothing while an Arena campaign is open)."""
        if request is not None and access.closed_while_judging(self.ws, request):
            return ("", *self.light(None), *self.heavy(None, ""))
        run = get_run(self.ws, rid)
        if run is None and int_or_none(rid) is not None:
            gr.Warning(f"No run {int_or_none(rid)}.")
        return (str(run.id) if run else "", *self.light(run), *self.heavy(run, old_sig, step))

    def refresh(self, rid: Any, old_lsig: str, old_sig: str, step: Any, request: gr.Request) -> tuple:
        """The timer's share: only what changed (a campaign that opened clears what was shown, once)."""
        if access.closed_while_judging(self.ws, request):
            heavy = self.heavy(None, "") if old_sig else [gr.skip()] * len(self.heavy_outputs)
            return (*self.light(None, old_lsig), *heavy)
        run = get_run(self.ws, rid)
        if run is None:
            return tuple(gr.skip() for _ in (*self.light_outputs, *self.heavy_outputs))
        return (*self.light(run, old_lsig), *self.heavy(run, old_sig, step))

    def pick_step(self, rid: Any, step: Any, request: gr.Request) -> str:
        if access.closed_while_judging(self.ws, request):
            return ""
        run = get_run(self.ws, rid)
        return samples_html(self.ws, run, int_or_none(step)) if run is not None else ""


def build(ws: Workspace) -> DetailView:
    """The detail section's components (wired by the tab)."""
    gr.Markdown("### Run detail")
    with gr.Row():
        run_id = gr.Textbox(
            label="Run id", placeholder="id", max_lines=1, scale=0, min_width=110, elem_id="run-id"
        )
        open_btn = gr.Button("Open", size="sm", scale=0, min_width=80, elem_id="run-open")
        with gr.Row(visible=False, elem_id="run-actions") as actions:
            # shown only when they apply: cancel for queued/running runs, resume for stopped ones
            button = {"size": "sm", "visible": False, "scale": 0, "min_width": 120}
            cancel_btn = gr.Button("Cancel run", variant="stop", elem_id="run-cancel", **button)
            resume_btn = gr.Button("Resume run", variant="primary", elem_id="run-resume", **button)
    action_result = gr.Markdown(elem_id="run-action-result")
    header = gr.HTML(SELECT_PROMPT, elem_id="run-header")
    sig, light_sig = gr.State(""), gr.State("")
    with gr.Tabs(elem_id="run-detail-tabs"):
        with gr.Tab("Log", id="run-log-tab"):
            log_box = gr.Textbox(
                label=f"Log (last {LOG_LINES} lines)",
                lines=16,
                max_lines=24,
                autoscroll=True,
                elem_id="run-log",
            )
        with gr.Tab("Loss curves", id="run-curves-tab"):
            curves = gr.Plot(label="train_loss / val_loss", elem_id="run-curves")
            curves_note = gr.Markdown()
        with gr.Tab("Metrics", id="run-metrics-tab"):
            metrics = gr.Dataframe(
                headers=["metric", "values", "steps", "last", "min", "max"],
                interactive=False,
                elem_id="run-metrics",
            )
            usage_view = gr.HTML(elem_id="run-usage")
        with gr.Tab("Validation samples", id="run-samples-tab"):
            sample_step = gr.Dropdown(label="Evaluation step", choices=[], elem_id="run-sample-step")
            samples = gr.HTML(elem_id="run-samples")
        with gr.Tab("Artifacts", id="run-artifacts-tab"):
            artifacts = gr.Dataframe(
                headers=["id", "kind", "name", "path"], interactive=False, elem_id="run-artifacts"
            )
        with gr.Tab("Config", id="run-config-tab"):
            config_view = gr.JSON(elem_id="run-config")
    return DetailView(
        ws, run_id, open_btn, actions, cancel_btn, resume_btn, action_result, header, sig, light_sig,
        log_box, curves, curves_note, metrics, usage_view, sample_step, samples, artifacts, config_view,
    )  # fmt: skip
