"""Runs tab: launch model jobs, follow the queue, and inspect one run in depth.

Design notes
- Launching and cancelling are admin work: the forms and buttons are hidden for annotators,
  and every such handler checks the role on the server (:func:`require_admin_ui`), because
  the events exist for every logged-in session whatever the page shows.
- The page never runs a job: launch creates a queued run (:func:`backend.jobs.configs.new_run`,
  the same validation as the CLI) and asks the queue to start it; the runner is a subprocess.
  The studio's queue thread (:func:`start_queue_worker`) advances the queue every ~2 s.
- The runs table is one page of runs (newest first) refreshed by a ``gr.Timer``; the detail
  view's heavy parts (loss curves, metrics, samples) are redrawn only when the run changed.
- While an Arena campaign is open, annotators get no runs at all (every handler that reads
  runs checks :func:`studio.access.closed_while_judging`): configs, logs and validation
  images tie checkpoints to their captions and images.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import threading
from typing import Any

import gradio as gr
from matplotlib.figure import Figure

from backend import jobs
from backend.datasets import dataset_names
from backend.jobs import configs
from backend.models import Role
from backend.users import PermissionDenied
from backend.workspace import Workspace
from studio import access, run_forms
from studio.session import current_user, require_admin_ui

log = logging.getLogger(__name__)

DEV_ENV = "RECAP_STUDIO_DEV"
PAGE_SIZE = 15
REFRESH_S = 2.0
QUEUE_TICK_S = 2.0
LOG_LINES = 200
STATUS_FILTERS = ["all", "active", "queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
TABLE_HEADERS = ["id", "kind", "status", "progress", "rate", "ETA", "started", "message"]
TABLE_TYPES = ["number", "str", "html", "html", "str", "str", "str", "str"]
STATUS_ICONS = {
    "queued": "⏳",
    "running": "▶",
    "succeeded": "✔",
    "failed": "✖",
    "cancelled": "■",
    "interrupted": "⚠",
}
HUB_EXAMPLES = [
    (f"{hub_id}  (hub)", hub_id) for hub_id in ("Salesforce/blip-image-captioning-base", "microsoft/git-base")
]

D_TRAIN = configs.DEFAULTS["captioner_train"]
D_RECAP = configs.DEFAULTS["recaption"]
D_CLIP = configs.DEFAULTS["clip_score"]
D_T2I = configs.DEFAULTS["t2i_train"]
D_GEN = configs.DEFAULTS["generate"]
D_EVAL = configs.DEFAULTS["t2i_eval"]
T2I_HUB_EXAMPLES = [(f"{configs.DEFAULT_T2I_BASE}  (hub)", configs.DEFAULT_T2I_BASE)]
CUSTOM_MIX = "custom"
MIX_PRESETS = [
    ("RECAP Mix (50% short, 50% long)", "recap_mix"),
    ("DALL-E 3 blend (95% long, 5% alt-text)", "dalle3"),
    ("Recap-DataComp, p=0.8 alt-text", "recap_datacomp:p=0.8"),
    ("Recap-DataComp, p=0.5 alt-text", "recap_datacomp:p=0.5"),
    ("Alt-text only", "alttext"),
    ("Short recaptions only", "recap_short=1"),
    ("Long recaptions only", "recap_long=1"),
    ("Custom weights →", CUSTOM_MIX),
]

STYLE = """
<style>
#runs-table progress, #run-header progress { width: 7em; height: 0.9em; vertical-align: middle; }
.run-status { font-weight: 600; white-space: nowrap; }
.run-status-running { color: #1d6fd8; }
.run-status-queued { color: #7a6a00; }
.run-status-succeeded { color: #1b7f3b; }
.run-status-failed { color: #c62828; }
.run-status-cancelled, .run-status-interrupted { color: #a15c00; }
.run-error { border: 2px solid #c62828; background: #fff4f4; color: #5a0000; padding: 0.6em 0.8em;
  border-radius: 6px; white-space: pre-wrap; font-size: 0.85em; max-height: 22em; overflow: auto; }
.run-note { border-left: 4px solid #a15c00; padding: 0.3em 0.8em; background: #fffaf0; }
.run-facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 0.2em 1.2em;
  font-size: 0.92em; margin: 0.4em 0 0.6em 0; }
.run-facts b { color: #555; font-weight: 600; }
.run-samples { border-collapse: collapse; width: 100%; font-size: 0.9em; }
.run-samples th, .run-samples td { border: 1px solid #ddd; padding: 0.35em 0.5em; vertical-align: top; text-align: left; }
.run-samples img { width: 96px; height: auto; border-radius: 4px; }
.run-samples .gen { background: #f3f8ff; }
.run-samples img.t2i { width: 160px; }
</style>
"""


def dev_mode() -> bool:
    return os.environ.get(DEV_ENV, "") == "1"


# --------------------------------------------------------------------------- the queue worker


def start_queue_worker(ws: Workspace, interval_s: float = QUEUE_TICK_S) -> threading.Event:
    """A daemon thread that advances the job queue every ``interval_s``; set the event to stop it.

    ``tick`` also turns runs whose process vanished into ``interrupted``, so a killed job
    frees its slot while the studio runs. It never raises: a busy database just waits a turn.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                jobs.tick(ws)
            except Exception as exc:  # noqa: BLE001 - the studio must outlive a bad tick
                log.warning("job queue tick failed: %s", exc)

    threading.Thread(target=loop, name="job-queue", daemon=True).start()
    return stop


# --------------------------------------------------------------------------- rendering


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def status_html(status: str) -> str:
    icon = STATUS_ICONS.get(status, "")
    return f'<span class="run-status run-status-{html.escape(status)}">{icon} {html.escape(status)}</span>'


def progress_html(run: jobs.Run) -> str:
    share = run_forms.fraction(run)
    bar = (
        f'<progress max="1000" value="{int(share * 1000)}"></progress>'
        if share is not None
        else "<progress></progress>"
    )
    return f"{bar} {html.escape(run_forms.progress_text(run))}"


def _status_filter(choice: str | None) -> str | tuple[str, ...] | None:
    if not choice or choice == "all":
        return None
    if choice == "active":
        return jobs.ACTIVE
    return choice


def table_page(ws: Workspace, page: int, status: str | None) -> tuple[list[list[Any]], str, int]:
    """One page of runs (newest first), a page label, and the page actually shown."""
    page = max(0, page)
    runs = jobs.list_runs(ws, status=_status_filter(status), limit=PAGE_SIZE + 1, offset=page * PAGE_SIZE)
    if not runs and page > 0:  # the page emptied (filter changed): back to the first
        page = 0
        runs = jobs.list_runs(ws, status=_status_filter(status), limit=PAGE_SIZE + 1)
    more = len(runs) > PAGE_SIZE
    rows = [
        [
            r.id,
            r.kind,
            status_html(r.status),
            progress_html(r),
            run_forms.fmt_rate(r.rate) if r.status == jobs.RunStatus.running.value else "—",
            run_forms.fmt_eta(r),
            run_forms.fmt_when(r.started_at),
            run_forms.headline(r, 80),
        ]
        for r in runs[:PAGE_SIZE]
    ]
    if not rows:
        label = "No runs yet." if status in (None, "", "all") else "No runs match this filter."
    else:
        label = f"Page {page + 1}" + (" · more on the next page" if more else "")
    return rows, label, page


def header_html(ws: Workspace, run: jobs.Run | None) -> str:
    if run is None:
        return "<p>Select a run in the table (or type its id) to see its log, curves and samples.</p>"
    by = ""
    if run.created_by is not None:
        from backend.db import read_session
        from backend.models import User

        with read_session(ws) as s:
            user = s.get(User, run.created_by)
        by = user.name if user else ""
    facts = [
        ("Status", status_html(run.status)),
        ("Progress", progress_html(run)),
        ("Rate", html.escape(run_forms.fmt_rate(run.rate) if run.status == "running" else "—")),
        ("ETA", html.escape(run_forms.fmt_eta(run))),
        ("Started", html.escape(run_forms.fmt_when(run.started_at))),
        ("Finished", html.escape(run_forms.fmt_when(run.finished_at))),
        ("Elapsed", html.escape(run_forms.fmt_duration(run_forms.elapsed_s(run)))),
        ("Attempt", str(run.attempt)),
        ("Created by", html.escape(by or "CLI")),
        ("Folder", f"<code>{html.escape(run.output_dir)}</code>"),
    ]
    cells = "".join(f"<b>{k}</b><span>{v}</span>" for k, v in facts)
    parts = [f"<h3>Run #{run.id} · {html.escape(run.kind)}</h3>", f'<div class="run-facts">{cells}</div>']
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


def loss_figure(ws: Workspace, run_id: int) -> Figure | None:
    """train_loss / val_loss against step; None when the run has no loss yet."""
    series = {name: run_forms.metric_series(ws, run_id, name) for name in run_forms.LOSS_METRICS}
    series = {name: xy for name, xy in series.items() if xy[0]}
    if not series:
        return None
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
            (
                "Captioners",
                "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in captioners.items()),
            )
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


def _get(ws: Workspace, run_id: Any) -> jobs.Run | None:
    rid = _int(run_id)
    if rid is None:
        return None
    try:
        return jobs.get_run(ws, rid)
    except jobs.RunNotFound:
        return None


# --------------------------------------------------------------------------- the tab


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    dev = dev_mode()

    # ------------------------------------------------------------------ launch forms (admins)
    with gr.Column(visible=False, elem_id="runs-launch") as launch_box:
        gr.Markdown(
            "### Launch a run\nRuns execute as background jobs (one GPU job at a time; the rest queue)."
        )
        with gr.Accordion("Fine-tune a captioner", open=False, elem_id="form-captioner-train"):
            gr.Markdown(
                "Trains on the **approved human captions** of the dataset; validation captions are "
                "written at every evaluation and shown in the run's *Samples*."
            )
            with gr.Row():
                t_dataset = gr.Dropdown(
                    label="Dataset", choices=[], allow_custom_value=True, elem_id="train-dataset"
                )
                t_base = gr.Dropdown(
                    label="Base model (captioner artifact, hub id or local folder)",
                    choices=HUB_EXAMPLES,
                    value=D_TRAIN["base"],
                    allow_custom_value=True,
                    elem_id="train-base",
                )
            with gr.Row():
                t_style = gr.Radio(configs.STYLES, value=D_TRAIN["style"], label="Caption style")
                t_both = gr.Radio(
                    configs.BOTH_MODES,
                    value=D_TRAIN["both_mode"],
                    label="With 'both': two models or one style-prompted model",
                )
            with gr.Row():
                t_lora = gr.Checkbox(value=D_TRAIN["lora"], label="LoRA (peft) instead of full fine-tune")
                t_rank = gr.Number(value=D_TRAIN["lora_rank"], precision=0, label="LoRA rank", minimum=1)
                t_freeze = gr.Checkbox(value=D_TRAIN["freeze_vision"], label="Freeze vision encoder")
            with gr.Row():
                t_lr = gr.Number(value=D_TRAIN["lr"], label="Learning rate")
                t_epochs = gr.Number(value=D_TRAIN["epochs"], precision=0, label="Epochs", minimum=1)
                t_batch = gr.Number(value=D_TRAIN["batch_size"], precision=0, label="Batch size", minimum=1)
                t_accum = gr.Number(
                    value=D_TRAIN["grad_accum"], precision=0, label="Grad. accumulation", minimum=1
                )
            with gr.Row():
                t_mp = gr.Dropdown(
                    list(configs.MIXED_PRECISION),
                    value=D_TRAIN["mixed_precision"],
                    label="Mixed precision (GPU)",
                )
                t_seed = gr.Number(value=D_TRAIN["seed"], precision=0, label="Seed", minimum=0)
                t_val = gr.Number(value=D_TRAIN["val_fraction"], label="Validation fraction")
                t_eval = gr.Number(
                    value=D_TRAIN["eval_every"], precision=0, label="Evaluate every N steps", minimum=1
                )
            with gr.Row():
                t_tokens = gr.Number(
                    value=D_TRAIN["max_new_tokens"], precision=0, label="Max new tokens (0 = the style's default)", minimum=0
                )
                t_device = gr.Dropdown(list(configs.DEVICES), value=D_TRAIN["device"], label="Device")
                t_clip_model = gr.Textbox(
                    value=D_TRAIN["clip_model"],
                    label="CLIP-score validation with (open_clip model; empty = off)",
                )
                t_clip_pretrained = gr.Textbox(
                    value=D_TRAIN["clip_pretrained"], label="… its pretrained tag or local checkpoint"
                )
            t_go = gr.Button("Start fine-tune", variant="primary", elem_id="launch-train")
        with gr.Accordion("Recaption a dataset", open=False, elem_id="form-recaption"):
            gr.Markdown("Writes `recap_short` / `recap_long` captions with full provenance; resumable.")
            with gr.Row():
                r_dataset = gr.Dropdown(
                    label="Dataset", choices=[], allow_custom_value=True, elem_id="recap-dataset"
                )
                r_captioner = gr.Dropdown(
                    label="Captioner (artifact, hub id or local folder)",
                    choices=[],
                    allow_custom_value=True,
                    elem_id="recap-captioner",
                )
                r_style = gr.Radio(configs.STYLES, value=D_RECAP["style"], label="Style")
            r_prompt = gr.Textbox(label="Prompt (optional; for prompted / chat captioners)", lines=1)
            with gr.Row():
                r_batch = gr.Number(value=D_RECAP["batch_size"], precision=0, label="Batch size", minimum=1)
                r_workers = gr.Number(
                    value=D_RECAP["num_workers"], precision=0, label="Loader workers", minimum=0
                )
                r_tokens = gr.Number(
                    value=D_RECAP["max_new_tokens"],
                    precision=0,
                    # 0: each caption style's own limit (configs.DEFAULT_MAX_NEW_TOKENS)
                    label="Max new tokens (0 = the style's default)",
                    minimum=0,
                )
                r_beams = gr.Number(value=D_RECAP["num_beams"], precision=0, label="Beams", minimum=1)
            with gr.Row():
                r_dtype = gr.Dropdown(list(configs.DTYPES), value=D_RECAP["dtype"], label="Dtype")
                r_device = gr.Dropdown(list(configs.DEVICES), value=D_RECAP["device"], label="Device")
            r_go = gr.Button("Start recaption", variant="primary", elem_id="launch-recaption")
        with gr.Accordion("CLIP-score captions", open=False, elem_id="form-clip-score"):
            gr.Markdown(
                "100 × cosine(image, caption) per caption, flagged past CLIP's 77 tokens; shown in Review."
            )
            with gr.Row():
                c_dataset = gr.Dropdown(
                    label="Dataset", choices=[], allow_custom_value=True, elem_id="clip-dataset"
                )
                c_kinds = gr.Dropdown(
                    label="Caption kinds",
                    choices=[
                        "alttext",
                        "human_short",
                        "human_long",
                        "recap_short",
                        "recap_long",
                        "upsampled",
                    ],
                    value=list(D_CLIP["kinds"]),
                    multiselect=True,
                    allow_custom_value=True,
                )
            with gr.Row():
                c_model = gr.Textbox(value=D_CLIP["model"], label="open_clip model")
                c_pretrained = gr.Textbox(
                    value=D_CLIP["pretrained"], label="Pretrained tag or local checkpoint"
                )
            with gr.Row():
                c_batch = gr.Number(value=D_CLIP["batch_size"], precision=0, label="Batch size", minimum=1)
                c_device = gr.Dropdown(list(configs.DEVICES), value=D_CLIP["device"], label="Device")
            c_go = gr.Button("Start scoring", variant="primary", elem_id="launch-clip")
        with gr.Accordion("Fine-tune a text-to-image model", open=False, elem_id="form-t2i-train"):
            gr.Markdown(
                "RECAP step 4: fine-tune a Stable Diffusion pipeline on the dataset's captions, drawn per "
                "example from a **caption mix** (RECAP Mix = 50/50 short/long recaptions). Validation "
                "images are rendered every N steps and shown in the run's *Validation samples*."
            )
            with gr.Row():
                t2_dataset = gr.Dropdown(
                    label="Dataset", choices=[], allow_custom_value=True, elem_id="t2i-dataset"
                )
                t2_base = gr.Dropdown(
                    label="Base pipeline (t2i artifact, local folder or hub id)",
                    choices=T2I_HUB_EXAMPLES,
                    value=D_T2I["base"],
                    allow_custom_value=True,
                    elem_id="t2i-base",
                )
            with gr.Row():
                t2_mix = gr.Dropdown(
                    MIX_PRESETS,
                    value=D_T2I["mix"],
                    label="Caption mix",
                    elem_id="t2i-mix",
                )
                t2_mix_custom = gr.Textbox(
                    label="Custom weights (with 'custom'), e.g. recap_short=0.3,recap_long=0.7",
                    elem_id="t2i-mix-custom",
                )
                t2_empty = gr.Number(
                    value=D_T2I["empty_prob"],
                    label="Empty-caption probability",
                    minimum=0,
                    maximum=0.99,
                    elem_id="t2i-empty",
                )
            with gr.Row():
                t2_train = gr.Radio(
                    list(configs.T2I_TRAIN_TARGETS), value=D_T2I["train"], label="Train", elem_id="t2i-train"
                )
                t2_lora = gr.Checkbox(value=D_T2I["lora"], label="LoRA (peft) instead of full fine-tune")
                t2_rank = gr.Number(value=D_T2I["lora_rank"], precision=0, label="LoRA rank", minimum=1)
            with gr.Row():
                t2_lr_unet = gr.Number(value=D_T2I["lr_unet"], label="UNet learning rate")
                t2_lr_te = gr.Number(value=D_T2I["lr_text_encoder"], label="Text-encoder learning rate")
                t2_steps = gr.Number(
                    value=D_T2I["steps"], precision=0, label="Steps", minimum=1, elem_id="t2i-steps"
                )
                t2_batch = gr.Number(
                    value=D_T2I["batch_size"], precision=0, label="Batch size", minimum=1, elem_id="t2i-batch"
                )
                t2_res = gr.Number(
                    value=D_T2I["resolution"],
                    precision=0,
                    label="Resolution (0 = the base's own size)",
                    minimum=0,
                    elem_id="t2i-res",
                )
            with gr.Row():
                t2_ema = gr.Checkbox(value=D_T2I["ema"], label="EMA of the UNet")
                t2_cache = gr.Checkbox(value=D_T2I["cache_latents"], label="Cache latents")
                t2_long = gr.Radio(
                    list(configs.LONG_CAPTIONS),
                    value=D_T2I["long_captions"],
                    label="Captions past 77 tokens",
                )
                t2_workers = gr.Number(
                    value=D_T2I["num_workers"],
                    precision=0,
                    label="Loader workers",
                    minimum=0,
                    elem_id="t2i-workers",
                )
            t2_prompts = gr.Textbox(
                value="\n".join(D_T2I["validation_prompts"]),
                lines=3,
                label="Validation prompts (one per line)",
                elem_id="t2i-val-prompts",
            )
            with gr.Row():
                t2_val_every = gr.Number(
                    value=D_T2I["validation_every"],
                    precision=0,
                    label="Validate every N steps",
                    minimum=1,
                    elem_id="t2i-val-every",
                )
                t2_val_steps = gr.Number(
                    value=D_T2I["validation_inference_steps"],
                    precision=0,
                    label="Validation denoising steps",
                    minimum=1,
                    elem_id="t2i-val-steps",
                )
                t2_mp = gr.Dropdown(
                    list(configs.MIXED_PRECISION),
                    value=D_T2I["mixed_precision"],
                    label="Mixed precision (GPU)",
                )
                t2_device = gr.Dropdown(list(configs.DEVICES), value=D_T2I["device"], label="Device")
            t2_go = gr.Button("Start text-to-image fine-tune", variant="primary", elem_id="launch-t2i")
        with gr.Accordion("Generate images", open=False, elem_id="form-generate"):
            gr.Markdown(
                "Prompts × checkpoints × seeds → a dataset of generated images (`generated-run-<id>`) with "
                "full provenance. *Upsampled* rewrites each prompt with a language model first (DALL-E 3)."
            )
            with gr.Row():
                g_prompts = gr.Dropdown(
                    label="Prompt set (shipped set or a file path)",
                    choices=[],
                    value=D_GEN["prompts"],
                    allow_custom_value=True,
                    elem_id="gen-prompts",
                )
                g_checkpoints = gr.Dropdown(
                    label="Checkpoints (t2i artifacts, folders or hub ids)",
                    choices=[],
                    multiselect=True,
                    allow_custom_value=True,
                    elem_id="gen-checkpoints",
                )
            with gr.Row():
                g_seeds = gr.Textbox(value="0", label="Seeds (comma-separated)", elem_id="gen-seeds")
                g_regime = gr.Radio(
                    list(configs.PROMPT_REGIMES), value=D_GEN["regime"], label="Prompt regime"
                )
                g_upsampler = gr.Dropdown(
                    label="Upsampler (language model: artifact, folder or hub id)",
                    choices=[],
                    allow_custom_value=True,
                    elem_id="gen-upsampler",
                )
            g_template = gr.Textbox(
                value=D_GEN["upsample_template"],
                lines=4,
                label="Upsampling template ({prompt} is replaced by the short prompt)",
                elem_id="gen-template",
            )
            with gr.Row():
                g_steps = gr.Number(
                    value=D_GEN["inference_steps"],
                    precision=0,
                    label="Denoising steps",
                    minimum=1,
                    elem_id="gen-steps",
                )
                g_guidance = gr.Number(value=D_GEN["guidance_scale"], label="Guidance scale", minimum=0)
                g_max = gr.Number(
                    value=D_GEN["max_prompts"],
                    precision=0,
                    label="Max prompts (0 = all)",
                    minimum=0,
                    elem_id="gen-max",
                )
                g_batch = gr.Number(value=D_GEN["batch_size"], precision=0, label="Batch size", minimum=1)
            with gr.Row():
                g_output = gr.Textbox(label="Output dataset (empty = generated-run-<id>)")
                g_device = gr.Dropdown(list(configs.DEVICES), value=D_GEN["device"], label="Device")
            g_go = gr.Button("Start generation", variant="primary", elem_id="launch-generate")
        with gr.Accordion("Evaluate generated images", open=False, elem_id="form-t2i-eval"):
            gr.Markdown(
                "CLIP score and CLIP R-precision against each image's prompt; FID/KID against a dataset of "
                "real images. Results appear in **Results → Automatic metrics**."
            )
            with gr.Row():
                e_dataset = gr.Dropdown(
                    label="Generated dataset", choices=[], allow_custom_value=True, elem_id="eval-dataset"
                )
                e_metrics = gr.CheckboxGroup(
                    list(configs.EVAL_METRICS),
                    value=list(D_EVAL["metrics"]),
                    label="Metrics",
                    elem_id="eval-metrics",
                )
            with gr.Row():
                e_clip_model = gr.Textbox(
                    value=D_EVAL["clip_model"], label="CLIP model (open_clip)", elem_id="eval-clip-model"
                )
                e_clip_pretrained = gr.Textbox(
                    value=D_EVAL["clip_pretrained"],
                    label="CLIP pretrained tag or local checkpoint",
                    elem_id="eval-clip-pretrained",
                )
            with gr.Row():
                e_reference = gr.Dropdown(
                    label="Reference dataset (real images, FID/KID)",
                    choices=[],
                    allow_custom_value=True,
                    elem_id="eval-reference",
                )
                e_extractor = gr.Dropdown(
                    ["inception", "clip"],
                    value=D_EVAL["extractor"],
                    label="FID/KID feature extractor",
                    allow_custom_value=True,
                )
                e_weights = gr.Textbox(label="Extractor weights (local file)", elem_id="eval-weights")
                e_device = gr.Dropdown(list(configs.DEVICES), value=D_EVAL["device"], label="Device")
            e_go = gr.Button("Start evaluation", variant="primary", elem_id="launch-eval")
        if dev:
            with gr.Accordion("Self-test job (developer mode)", open=False, elem_id="form-selftest"):
                gr.Markdown(f"A job without models that checks the job machinery (`{DEV_ENV}=1`).")
                with gr.Row():
                    s_items = gr.Number(
                        value=20, precision=0, label="Items", minimum=0, elem_id="selftest-items"
                    )
                    s_delay = gr.Number(
                        value=0.2, label="Seconds per item", minimum=0, elem_id="selftest-delay"
                    )
                    s_fail = gr.Checkbox(value=False, label="Fail halfway", elem_id="selftest-fail")
                s_go = gr.Button("Start self-test", variant="primary", elem_id="launch-selftest")
        with gr.Row():
            launch_result = gr.Markdown(elem_id="launch-result")
            refresh_lists = gr.Button("↻ Refresh datasets and captioners", size="sm", scale=0)

    # ------------------------------------------------------------------ runs table
    gr.Markdown("### Runs")
    with gr.Row():
        status_filter = gr.Dropdown(
            STATUS_FILTERS, value="all", label="Show", scale=0, min_width=180, elem_id="runs-filter"
        )
        page_label = gr.Markdown(elem_id="runs-page")
        page_prev = gr.Button("◀ Newer", size="sm", scale=0, min_width=100)
        page_next = gr.Button("Older ▶", size="sm", scale=0, min_width=100)
    page = gr.State(0)
    table = gr.Dataframe(
        headers=TABLE_HEADERS,
        datatype=TABLE_TYPES,
        interactive=False,
        wrap=True,
        elem_id="runs-table",
        label="Runs (newest first; click a row for details)",
        column_widths=["4%", "13%", "11%", "21%", "7%", "7%", "13%", "24%"],
        max_height=720,
    )
    timer = gr.Timer(REFRESH_S)

    # ------------------------------------------------------------------ run detail
    gr.Markdown("### Run detail")
    with gr.Row():
        run_id = gr.Textbox(
            label="Run id", placeholder="id", max_lines=1, scale=0, min_width=110, elem_id="run-id"
        )
        open_btn = gr.Button("Open", size="sm", scale=0, min_width=80, elem_id="run-open")
        with gr.Row(visible=False, elem_id="run-actions") as actions:
            # shown only when they apply: cancel for queued/running runs, resume for stopped ones
            cancel_btn = gr.Button(
                "Cancel run",
                variant="stop",
                size="sm",
                visible=False,
                scale=0,
                min_width=120,
                elem_id="run-cancel",
            )
            resume_btn = gr.Button(
                "Resume run",
                variant="primary",
                size="sm",
                visible=False,
                scale=0,
                min_width=120,
                elem_id="run-resume",
            )
    action_result = gr.Markdown(elem_id="run-action-result")
    header = gr.HTML(header_html(ws, None), elem_id="run-header")
    sig = gr.State("")
    light_sig = gr.State("")
    table_sig = gr.State("")
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
    gr.HTML(STYLE, padding=False)  # last: an empty block at the bottom, not a gap at the top

    # ------------------------------------------------------------------ helpers
    def buttons(run: jobs.Run | None) -> tuple[Any, Any]:
        active = run is not None and run.status in jobs.ACTIVE
        resumable = run is not None and run.status in jobs.RESUMABLE
        return gr.update(visible=active), gr.update(visible=resumable)

    # each part of the detail carries a signature (gr.State) of what it shows, so the timer
    # re-sends only what changed: no flicker, no reset scroll position, little traffic
    light_outputs = [light_sig, header, log_box, cancel_btn, resume_btn]
    heavy_outputs = [
        sig,
        curves,
        curves_note,
        metrics,
        usage_view,
        sample_step,
        samples,
        artifacts,
        config_view,
    ]
    detail_outputs = [run_id, *light_outputs, *heavy_outputs]

    def light(run: jobs.Run | None, old_sig: str = "") -> tuple[Any, ...]:
        text = jobs.log_tail(ws, int(run.id), LOG_LINES) if run is not None else ""  # type: ignore[arg-type]
        head = header_html(ws, run)
        new_sig = _digest(head, text, run.status if run else "")
        if new_sig == old_sig:
            return (old_sig, *[gr.skip()] * (len(light_outputs) - 1))
        return (new_sig, head, text or "(no log yet)", *buttons(run))

    def heavy(run: jobs.Run | None, old_sig: str, step: Any = None) -> tuple[Any, ...]:
        new_sig = signature(ws, run)
        if new_sig == old_sig and run is not None:
            return (old_sig, *[gr.skip()] * (len(heavy_outputs) - 1))
        if run is None:
            return (new_sig, None, "", [], "", gr.update(choices=[], value=None), "", [], None)
        rid = int(run.id)  # type: ignore[arg-type]
        figure = loss_figure(ws, rid)
        steps = run_forms.sample_steps(ws, run)
        chosen = _int(step) if _int(step) in steps else (steps[-1] if steps else None)
        return (
            new_sig,
            figure,
            ""
            if figure is not None
            else "_No loss values yet (fine-tune runs log train_loss and val_loss)._",
            metrics_rows(ws, rid),
            outputs_html(ws, run),
            gr.update(choices=[(f"step {s}", s) for s in reversed(steps)], value=chosen),
            samples_html(ws, run, chosen),
            artifacts_rows(ws, rid),
            run.config,
        )

    def show_run(
        rid: Any, old_sig: str = "", step: Any = None, request: gr.Request | None = None
    ) -> tuple[Any, ...]:
        # ``request`` comes from the events anyone can call; admin-only handlers pass none
        if request is not None and access.closed_while_judging(ws, request):
            return ("", *light(None), *heavy(None, ""))
        run = _get(ws, rid)
        if run is None and _int(rid) is not None:
            gr.Warning(f"No run {_int(rid)}.")
        return (str(run.id) if run else "", *light(run), *heavy(run, old_sig, step))

    def table_view(page_no: Any, status: str, request: gr.Request | None = None) -> tuple[Any, ...]:
        if request is not None and access.closed_while_judging(ws, request):
            return [], access.CLOSED_WHILE_JUDGING, 0
        rows, label, shown = table_page(ws, _int(page_no) or 0, status)
        return rows, label, shown

    table_outputs = [table, page_label, page]

    # ------------------------------------------------------------------ load / refresh
    def on_load(request: gr.Request) -> tuple[Any, ...]:
        try:
            admin = current_user(ws, request).role == Role.admin.value
        except PermissionDenied:
            admin = False
        rows, label, shown = table_view(0, "all", request)
        return (
            gr.update(visible=admin),
            gr.update(visible=admin),
            *(_list_updates(ws) if admin else [gr.skip()] * len(list_outputs)),
            rows,
            label,
            shown,
        )

    # the dropdowns filled from the database, in the order _list_updates returns them
    list_outputs = [
        t_dataset,
        r_dataset,
        c_dataset,
        r_captioner,
        t2_dataset,
        t2_base,
        g_prompts,
        g_checkpoints,
        g_upsampler,
        e_dataset,
        e_reference,
    ]
    blocks.load(
        on_load,
        None,
        [launch_box, actions, *list_outputs, *table_outputs],
        api_visibility="private",
    )

    def do_refresh_lists(request: gr.Request) -> tuple[Any, ...]:
        require_admin_ui(ws, request)
        return _list_updates(ws)

    refresh_lists.click(do_refresh_lists, None, list_outputs, api_visibility="private", queue=False)

    def on_timer(
        page_no: Any,
        status: str,
        rid: Any,
        old_tsig: str,
        old_lsig: str,
        old_sig: str,
        step: Any,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        rows, label, shown = table_view(page_no, status, request)
        tsig = _digest(rows, label, shown)
        table_part = (tsig, rows, label, shown) if tsig != old_tsig else (old_tsig, *[gr.skip()] * 3)
        if access.closed_while_judging(ws, request):  # a campaign opened: clear what was shown, once
            heavy_part = heavy(None, "") if old_sig else [gr.skip()] * len(heavy_outputs)
            return (*table_part, *light(None, old_lsig), *heavy_part)
        run = _get(ws, rid)
        if run is None:
            return (*table_part, *[gr.skip()] * (len(light_outputs) + len(heavy_outputs)))
        return (*table_part, *light(run, old_lsig), *heavy(run, old_sig, step))

    timer.tick(
        on_timer,
        [page, status_filter, run_id, table_sig, light_sig, sig, sample_step],
        [table_sig, *table_outputs, *light_outputs, *heavy_outputs],
        api_visibility="private",
        show_progress="hidden",
    )

    def turn(delta: int) -> Any:
        def go(page_no: Any, status: str, request: gr.Request) -> tuple[Any, ...]:
            return table_view((_int(page_no) or 0) + delta, status, request)

        return go

    def first_page(status: str, request: gr.Request) -> tuple[Any, ...]:
        return table_view(0, status, request)

    page_prev.click(turn(-1), [page, status_filter], table_outputs, api_visibility="private")
    page_next.click(turn(1), [page, status_filter], table_outputs, api_visibility="private")
    status_filter.input(first_page, [status_filter], table_outputs, api_visibility="private")

    def pick_row(data: Any, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        row = evt.row_value if getattr(evt, "row_value", None) else None
        if row is None:
            index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            try:
                row = list(data.iloc[int(index)])
            except (AttributeError, IndexError, TypeError, ValueError):
                return tuple(gr.skip() for _ in detail_outputs)
        return show_run(row[0], request=request)

    def open_run(rid: Any, request: gr.Request) -> tuple[Any, ...]:
        return show_run(rid, request=request)

    table.select(pick_row, [table], detail_outputs, api_visibility="private", show_progress="hidden")
    open_btn.click(open_run, [run_id], detail_outputs, api_visibility="private")
    run_id.submit(open_run, [run_id], detail_outputs, api_visibility="private")

    def pick_step(rid: Any, step: Any, request: gr.Request) -> str:
        if access.closed_while_judging(ws, request):
            return ""
        run = _get(ws, rid)
        return samples_html(ws, run, _int(step)) if run is not None else ""

    sample_step.input(pick_step, [run_id, sample_step], samples, api_visibility="private")

    # ------------------------------------------------------------------ launch (admins)
    launch_outputs = [launch_result, *table_outputs, *detail_outputs]

    def launched(kind: str, values: dict[str, Any], request: gr.Request) -> tuple[Any, ...]:
        user = require_admin_ui(ws, request)
        try:
            run = configs.new_run(ws, kind, values, created_by=user.id)
        except configs.ConfigError as exc:
            raise gr.Error(str(exc)) from None
        return started(run.id)

    def started(rid: Any) -> tuple[Any, ...]:
        try:
            jobs.tick(ws)
        except Exception as exc:  # noqa: BLE001 - the queue thread retries
            log.warning("could not start the queue at once: %s", exc)
        run = jobs.get_run(ws, int(rid))
        message = f"Launched run **#{run.id}** ({run.kind}): {run.status} at launch" + (
            " — it starts when the GPU is free." if run.status == "queued" else "."
        )
        message += " Follow it in the table and the detail below."
        rows, label, shown = table_page(ws, 0, "all")
        return (message, rows, label, shown, *show_run(run.id))

    def launch_captioner_train(
        dataset: str,
        base: str,
        style: str,
        both_mode: str,
        lora: bool,
        lora_rank: float,
        freeze_vision: bool,
        lr: float,
        epochs: float,
        batch_size: float,
        grad_accum: float,
        mixed_precision: str,
        seed: float,
        val_fraction: float,
        eval_every: float,
        max_new_tokens: float,
        device: str,
        clip_model: str,
        clip_pretrained: str,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """Queue a captioner fine-tune (admins only)."""
        values = {
            "dataset": dataset or "",
            "base": base or "",
            "style": style,
            "both_mode": both_mode,
            "lora": lora,
            "lora_rank": lora_rank,
            "freeze_vision": freeze_vision,
            "lr": lr,
            "epochs": epochs,
            "batch_size": batch_size,
            "grad_accum": grad_accum,
            "mixed_precision": mixed_precision,
            "seed": seed,
            "val_fraction": val_fraction,
            "eval_every": eval_every,
            "max_new_tokens": max_new_tokens,
            "device": device,
            "clip_model": clip_model,
            "clip_pretrained": clip_pretrained,
        }
        return launched("captioner_train", _present(values), request)

    t_go.click(
        launch_captioner_train,
        [
            t_dataset,
            t_base,
            t_style,
            t_both,
            t_lora,
            t_rank,
            t_freeze,
            t_lr,
            t_epochs,
            t_batch,
            t_accum,
            t_mp,
            t_seed,
            t_val,
            t_eval,
            t_tokens,
            t_device,
            t_clip_model,
            t_clip_pretrained,
        ],
        launch_outputs,
        api_name="launch_captioner_train",
    )

    def launch_recaption(
        dataset: str,
        captioner: str,
        style: str,
        prompt: str,
        batch_size: float,
        num_workers: float,
        max_new_tokens: float,
        num_beams: float,
        dtype: str,
        device: str,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """Queue a recaption of a dataset (admins only)."""
        values = {
            "dataset": dataset or "",
            "captioner": captioner or "",
            "style": style,
            "prompt": prompt or None,
            "batch_size": batch_size,
            "num_workers": num_workers,
            "max_new_tokens": max_new_tokens,
            "num_beams": num_beams,
            "dtype": dtype,
            "device": device,
        }
        return launched("recaption", _present(values, keep=("prompt",)), request)

    r_go.click(
        launch_recaption,
        [r_dataset, r_captioner, r_style, r_prompt, r_batch, r_workers, r_tokens, r_beams, r_dtype, r_device],
        launch_outputs,
        api_name="launch_recaption",
    )

    def launch_clip_score(
        dataset: str,
        kinds: list[str],
        model: str,
        pretrained: str,
        batch_size: float,
        device: str,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """Queue CLIP scoring of caption variants (admins only)."""
        values = {
            "dataset": dataset or "",
            "kinds": kinds or [],
            "model": model,
            "pretrained": pretrained,
            "batch_size": batch_size,
            "device": device,
        }
        return launched("clip_score", _present(values), request)

    c_go.click(
        launch_clip_score,
        [c_dataset, c_kinds, c_model, c_pretrained, c_batch, c_device],
        launch_outputs,
        api_name="launch_clip_score",
    )

    def launch_t2i_train(
        dataset: str,
        base: str,
        mix: str,
        mix_custom: str,
        empty_prob: float,
        train: str,
        lora: bool,
        lora_rank: float,
        lr_unet: float,
        lr_text_encoder: float,
        steps: float,
        batch_size: float,
        resolution: float,
        ema: bool,
        cache_latents: bool,
        long_captions: str,
        num_workers: float,
        validation_prompts: str,
        validation_every: float,
        validation_inference_steps: float,
        mixed_precision: str,
        device: str,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """Queue a text-to-image fine-tune on a caption mix (admins only)."""
        values = {
            "dataset": dataset or "",
            "base": base or "",
            "mix": mix_spec(mix, mix_custom),
            "empty_prob": empty_prob,
            "train": train,
            "lora": lora,
            "lora_rank": lora_rank,
            "lr_unet": lr_unet,
            "lr_text_encoder": lr_text_encoder,
            "steps": steps,
            "batch_size": batch_size,
            "resolution": resolution,
            "ema": ema,
            "cache_latents": cache_latents,
            "long_captions": long_captions,
            "num_workers": num_workers,
            "validation_prompts": _lines(validation_prompts),
            "validation_every": validation_every,
            "validation_inference_steps": validation_inference_steps,
            "mixed_precision": mixed_precision,
            "device": device,
        }
        if not values["validation_prompts"]:
            raise gr.Error("Validation prompts: give at least one prompt (one per line).")
        return launched("t2i_train", _present(values), request)

    t2_go.click(
        launch_t2i_train,
        [
            t2_dataset,
            t2_base,
            t2_mix,
            t2_mix_custom,
            t2_empty,
            t2_train,
            t2_lora,
            t2_rank,
            t2_lr_unet,
            t2_lr_te,
            t2_steps,
            t2_batch,
            t2_res,
            t2_ema,
            t2_cache,
            t2_long,
            t2_workers,
            t2_prompts,
            t2_val_every,
            t2_val_steps,
            t2_mp,
            t2_device,
        ],
        launch_outputs,
        api_name="launch_t2i_train",
    )

    def launch_generate(
        prompts: str,
        checkpoints: list[str] | str | None,
        seeds: str,
        regime: str,
        upsampler: str,
        template: str,
        inference_steps: float,
        guidance_scale: float,
        max_prompts: float,
        batch_size: float,
        output_dataset: str,
        device: str,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """Queue a generation: prompt set × checkpoints × seeds, raw and/or upsampled (admins only)."""
        if isinstance(checkpoints, str):
            checkpoints = [part.strip() for part in checkpoints.split(",") if part.strip()]
        values = {
            "prompts": prompts or "",
            "checkpoints": list(checkpoints or []),
            "seeds": seeds or "",
            "regime": regime,
            "upsampler": upsampler or "",
            "upsample_template": template or D_GEN["upsample_template"],
            "inference_steps": inference_steps,
            "guidance_scale": guidance_scale,
            "max_prompts": max_prompts,
            "batch_size": batch_size,
            "output_dataset": output_dataset or "",
            "device": device,
        }
        return launched("generate", _present(values), request)

    g_go.click(
        launch_generate,
        [
            g_prompts,
            g_checkpoints,
            g_seeds,
            g_regime,
            g_upsampler,
            g_template,
            g_steps,
            g_guidance,
            g_max,
            g_batch,
            g_output,
            g_device,
        ],
        launch_outputs,
        api_name="launch_generate",
    )

    def launch_t2i_eval(
        dataset: str,
        metrics: list[str],
        clip_model: str,
        clip_pretrained: str,
        reference_dataset: str,
        extractor: str,
        extractor_weights: str,
        device: str,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """Queue automatic metrics of a generated dataset (admins only)."""
        values = {
            "dataset": dataset or "",
            "metrics": list(metrics or []),
            "clip_model": clip_model or "",
            "clip_pretrained": clip_pretrained or "",
            "reference_dataset": reference_dataset or "",
            "extractor": extractor or "",
            "extractor_weights": extractor_weights or "",
            "device": device,
        }
        return launched("t2i_eval", _present(values), request)

    e_go.click(
        launch_t2i_eval,
        [
            e_dataset,
            e_metrics,
            e_clip_model,
            e_clip_pretrained,
            e_reference,
            e_extractor,
            e_weights,
            e_device,
        ],
        launch_outputs,
        api_name="launch_t2i_eval",
    )

    if dev:

        def launch_selftest(
            items: float, delay: float, fail_half: bool, request: gr.Request
        ) -> tuple[Any, ...]:
            """Queue a model-free self-test job (developer mode, admins only)."""
            user = require_admin_ui(ws, request)
            n = max(0, int(items or 0))
            config: dict[str, Any] = {"items": n, "delay_s": max(0.0, float(delay or 0))}
            if fail_half:
                config.update(fail=True, fail_after=n // 2)
            run = jobs.create_run(ws, "selftest", config, created_by=user.id)
            return started(run.id)

        s_go.click(launch_selftest, [s_items, s_delay, s_fail], launch_outputs, api_name="launch_selftest")

    # ------------------------------------------------------------------ cancel / resume (admins)
    action_outputs = [action_result, *detail_outputs]

    def cancel_run(rid: Any, request: gr.Request) -> tuple[Any, ...]:
        """Cancel a queued or running run (admins only)."""
        require_admin_ui(ws, request)
        if _int(rid) is None:
            raise gr.Error("Choose a run first.")
        try:
            run = jobs.cancel_run(ws, int(rid))
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        return (f"Run #{run.id} {run.status}: {run.message}", *show_run(run.id))

    # no concurrency limit: a cancel must never wait behind other events
    cancel_btn.click(cancel_run, [run_id], action_outputs, api_name="cancel_run", concurrency_limit=None)

    def resume_run(rid: Any, request: gr.Request) -> tuple[Any, ...]:
        """Queue an interrupted, cancelled or failed run again; it continues where it stopped (admins only)."""
        require_admin_ui(ws, request)
        if _int(rid) is None:
            raise gr.Error("Choose a run first.")
        try:
            run = jobs.resume_run(ws, int(rid))
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        return (f"Run #{run.id} resumed: it continues where it stopped ({run.status}).", *show_run(run.id))

    resume_btn.click(resume_run, [run_id], action_outputs, api_name="resume_run")


def _digest(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode("utf-8"), usedforsecurity=False).hexdigest()


def _present(values: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Drop empty form fields (they take the defaults), but keep ``keep`` even when None."""
    return {k: v for k, v in values.items() if v is not None or k in keep}


def mix_spec(preset: str | None, custom: str | None) -> str:
    """The ``mix`` config value: the chosen preset, or the custom weights when 'custom' is chosen
    (or when no preset is chosen but weights are typed)."""
    custom = (custom or "").strip()
    if preset == CUSTOM_MIX or (not preset and custom):
        if not custom:
            raise gr.Error(
                "Caption mix: you chose custom weights; type them, e.g. recap_short=0.3,recap_long=0.7"
            )
        return custom
    return preset or ""


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _list_updates(ws: Workspace) -> list[Any]:
    """The launch forms' dropdowns fresh from the database (order: ``list_outputs`` in :func:`build`)."""
    from backend.prompt_sets import builtin_prompt_sets

    names = dataset_names(ws)
    first = names[0] if names else None
    captioners = configs.captioner_choices(ws)
    newest = captioners[0][1] if captioners else None
    pipelines = run_forms.artifact_choices(ws, configs.T2I_ARTIFACT)
    upsamplers = run_forms.artifact_choices(ws, "upsampler")
    generated = run_forms.generated_datasets(ws)
    real = [n for n in names if n not in generated]
    return [
        *[gr.update(choices=names, value=first) for _ in range(3)],
        gr.update(choices=[*captioners, *HUB_EXAMPLES], value=newest),
        gr.update(choices=real, value=real[0] if real else first),
        gr.update(choices=[*pipelines, *T2I_HUB_EXAMPLES]),
        gr.update(choices=list(builtin_prompt_sets())),
        gr.update(choices=pipelines, value=[pipelines[0][1]] if pipelines else []),
        gr.update(choices=upsamplers),
        gr.update(choices=generated, value=generated[0] if generated else None),
        gr.update(choices=real, value=None),
    ]
