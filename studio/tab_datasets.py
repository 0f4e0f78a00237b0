"""Datasets tab: every dataset with its image and caption counts, statistics and plots,
and for admins import, export and delete.

Design notes
- The admin controls are hidden for annotators, but Gradio endpoints exist for every
  event, so each admin handler checks the role on the server with
  :func:`studio.session.require_admin_ui` first; a direct API call as an annotator gets a
  clear "Not allowed" error. Each admin action has an explicit ``api_name``.
- Import takes either a path on the server or uploaded files. Uploads are copied under
  the workspace's ``uploads/`` (a new folder per import), so the import reads from inside
  the workspace and nothing is written elsewhere. Export writes only under ``exports/``.
- Import runs with a ``gr.Progress`` bar fed by the backend's progress callback.
- An annotator gets nothing about a dataset an open Arena campaign judges: not its row,
  not its name in a dropdown, not its statistics, whatever they send
  (:func:`studio.access.hidden_datasets`, checked in every handler).
"""

from __future__ import annotations

import html
import re
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from backend.datasets import DatasetInUse, DatasetNotFound, all_summaries, delete_dataset
from backend.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from backend.ingest.sources.folder import SIDECAR_SUFFIXES
from backend.ingest.sources.table import TABLE_SUFFIXES
from backend.ingest.sources.webdataset import SHARD_SUFFIXES
from backend.progress import ProgressFn
from backend.review import kind_label, kind_sort_key
from backend.workspace import UnsafePathError, Workspace, safe_join
from studio import access
from studio.session import is_admin, require_admin_ui
from studio.tab_review import build_stats_section, parent_tab, pick_dataset

IMPORT_FORMATS = ["auto", "folder", "table", "webdataset", "hf"]
EXPORT_FORMATS = ["jsonl", "parquet", "webdataset", "hf", "folder"]
ALL_KINDS = "(every kind)"
_SAFE_NAME = re.compile(r"[^\w.\-]+")
# What the upload box takes (checked by Gradio on the server too): images, caption sidecars,
# one table, or shards: the importer's own formats, nothing else.
UPLOAD_FILE_TYPES = sorted({*IMAGE_SUFFIXES, *SIDECAR_SUFFIXES, *TABLE_SUFFIXES, *SHARD_SUFFIXES})


# --------------------------------------------------------------------------- tables


def datasets_frame(ws: Workspace, hidden: set[str] | frozenset[str] = frozenset()) -> pd.DataFrame:
    """One row per dataset (but the ``hidden`` ones): name, images, then the current caption
    count of each kind."""
    summaries = all_summaries(ws, exclude=hidden)
    kinds = sorted({k for s in summaries for k in s.captions}, key=kind_sort_key)
    columns = ["dataset", "images", *[kind_label(k) for k in kinds]]
    rows = [[s.name, s.images, *[s.captions.get(k, 0) for k in kinds]] for s in summaries]
    return pd.DataFrame(rows, columns=columns)


def skipped_frame(skipped: list[dict[str, str]] | None = None) -> pd.DataFrame:
    return pd.DataFrame([[s["item"], s["reason"]] for s in skipped or []], columns=["skipped item", "reason"])


def _gradio_progress(progress: gr.Progress) -> ProgressFn:
    def update(done: int, total: int | None, message: str) -> None:
        progress((done, total), desc=message or "importing", unit="items")

    return update


def _safe_upload_name(name: str) -> str:
    cleaned = _SAFE_NAME.sub("_", Path(name).name).strip("._")
    return cleaned or "upload"


def stage_uploads(ws: Workspace, files: list[Any]) -> Path:
    """Copy uploaded files into a new folder under ``uploads/``; return what to import.

    One table or one shard is imported as that file; several files (images with their
    .txt/.json sidecars, or several shards) as the folder that holds them.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = safe_join(ws.uploads_dir, f"{stamp}-{secrets.token_hex(3)}")
    folder.mkdir(parents=True)
    staged: list[Path] = []
    used: set[str] = set()
    for item in files:
        src = Path(getattr(item, "name", None) or getattr(item, "path", None) or str(item))
        name = _safe_upload_name(src.name)
        while name in used:
            name = f"{secrets.token_hex(2)}-{name}"
        used.add(name)
        target = safe_join(folder, name)
        shutil.copyfile(src, target)
        staged.append(target)
    if len(staged) == 1 and staged[0].suffix.lower() == ".zip":
        shutil.rmtree(folder, ignore_errors=True)
        raise gr.Error(
            "Zip archives are not supported: upload the files themselves, a table, or .tar shards."
        )
    if len(staged) == 1 and staged[0].suffix.lower() not in {
        ".jpg",
        ".jpeg",
        ".png",
        ".webp",
        ".gif",
        ".bmp",
    }:
        return staged[0]
    return folder


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def import_result_md(summary: dict[str, Any], source: str) -> str:
    skipped = len(summary["skipped"])
    parts = [
        f"**Imported {_count(summary['imported'], 'image')}** into **{html.escape(summary['dataset'])}** "
        f"from `{html.escape(source)}`",
        f"{_count(summary['duplicates'], 'duplicate')} (same content already there, not added again)",
        f"{skipped:,} skipped" + (" — reasons below" if skipped else ""),
    ]
    recoded = summary.get("not_utf8") or []
    if recoded:  # captions whose encoding was inferred (backend/ingest/text.py): worth a look
        shown = ", ".join(f"`{html.escape(t['item'])}` ({html.escape(t['read_as'])})" for t in recoded[:10])
        more = f" and {len(recoded) - 10:,} more" if len(recoded) > 10 else ""
        parts.append(f"{_count(len(recoded), 'text')} not in UTF-8, read as a legacy encoding: {shown}{more}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- the tab


def build(ws: Workspace, blocks: gr.Blocks) -> None:
    tab = parent_tab()

    with gr.Row(equal_height=False):
        gr.Markdown(
            "### Datasets\nImages and their current caption variants per kind. "
            "Select a row to see its statistics below.",
            elem_id="datasets-intro",
        )
        refresh_btn = gr.Button("↻ Refresh", size="sm", scale=0, min_width=100, elem_id="datasets-refresh")
    table = gr.Dataframe(
        value=pd.DataFrame(columns=["dataset", "images"]),
        interactive=False,
        wrap=True,
        elem_id="datasets-table",
        label="Datasets",
        show_label=False,
    )

    admin_note = gr.Markdown(
        "_Import, export and delete are admin actions._", visible=False, elem_id="datasets-annotator-note"
    )
    with gr.Column(visible=False, elem_id="datasets-admin") as admin_col:
        with gr.Accordion("Import images and alt-text (admin)", open=True, elem_id="datasets-import"):
            gr.Markdown(
                "Give **either** a folder/file path on the server **or** upload files: images with "
                "`.txt`/`.json` sidecars, one table (`.csv`, `.tsv`, `.jsonl`, `.parquet`) or `.tar` shards. "
                "Bad items are skipped with a reason; duplicates are detected by content.",
                elem_classes=["ds-help"],
            )
            with gr.Row():
                source_path = gr.Textbox(
                    label="Server path",
                    placeholder="/data/my-images  or  /data/table.parquet  or  /data/shards",
                    scale=2,
                    elem_id="import-path",
                )
                uploads = gr.File(
                    label="…or upload files",
                    file_count="multiple",
                    file_types=UPLOAD_FILE_TYPES,
                    type="filepath",
                    scale=2,
                    height=120,
                    elem_id="import-upload",
                )
            with gr.Row():
                import_name = gr.Textbox(
                    label="Into dataset (new or existing)", elem_id="import-dataset", scale=2
                )
                import_fmt = gr.Dropdown(
                    label="Format", choices=IMPORT_FORMATS, value="auto", elem_id="import-format", scale=1
                )
                image_col = gr.Textbox(
                    label="Image column (tables)", placeholder="auto", elem_id="import-image-col"
                )
                caption_col = gr.Textbox(
                    label="Alt-text column (tables)", placeholder="auto", elem_id="import-caption-col"
                )
                max_pixels = gr.Number(
                    label="Max pixels per image",
                    value=DEFAULT_MAX_PIXELS,
                    precision=0,
                    minimum=1,
                    elem_id="import-max-pixels",
                )
            import_btn = gr.Button("Import", variant="primary", elem_id="import-button")
            import_result = gr.Markdown(elem_id="import-result")
            skipped = gr.Dataframe(
                value=skipped_frame(),
                interactive=False,
                wrap=True,
                visible=False,
                label="Skipped items",
                elem_id="import-skipped",
            )
        with gr.Accordion("Export (admin)", open=False, elem_id="datasets-export"):
            with gr.Row():
                export_ds = gr.Dropdown(
                    label="Dataset", choices=[], allow_custom_value=True, elem_id="export-dataset"
                )
                export_fmt = gr.Dropdown(
                    label="Format", choices=EXPORT_FORMATS, value="jsonl", elem_id="export-format"
                )
                export_kind = gr.Dropdown(
                    label="Caption kind (folder format: required)",
                    choices=[ALL_KINDS],
                    value=ALL_KINDS,
                    allow_custom_value=True,
                    elem_id="export-kind",
                )
                export_name = gr.Textbox(
                    label="Output folder under exports/",
                    placeholder="default: <dataset>-<format>-<time>",
                    elem_id="export-name",
                )
            export_btn = gr.Button("Export", elem_id="export-button")
            export_result = gr.Markdown(elem_id="export-result")
        with gr.Accordion("Delete a dataset (admin)", open=False, elem_id="datasets-delete"):
            with gr.Row(equal_height=True):
                delete_ds = gr.Dropdown(
                    label="Dataset", choices=[], allow_custom_value=True, elem_id="delete-dataset"
                )
                delete_confirm = gr.Checkbox(
                    label="Yes, delete this dataset with all its captions and annotation work (cannot be undone)",
                    value=False,
                    elem_id="delete-confirm",
                )
                delete_btn = gr.Button("Delete", variant="stop", scale=0, elem_id="delete-button")
            delete_result = gr.Markdown(elem_id="delete-result")

    with gr.Accordion("Statistics", open=True, elem_id="datasets-stats"):
        stats = build_stats_section(ws, prefix="datasets-")
        stats_ds = stats.dataset

    # ------------------------------------------------------------------ refresh

    ds_dropdowns = [export_ds, delete_ds, stats_ds]

    def table_and_lists(
        export_value: str | None,
        delete_value: str | None,
        stats_value: str | None,
        hidden: set[str] | frozenset[str] = frozenset(),
    ):
        frame = datasets_frame(ws, hidden)
        names = list(frame["dataset"])
        return (
            frame,
            gr.update(choices=names, value=pick_dataset(names, export_value)),
            gr.update(choices=names, value=delete_value if delete_value in names else None),
            gr.update(choices=names, value=pick_dataset(names, stats_value)),
        )

    def refresh_all(export_value, delete_value, stats_value, request: gr.Request):  # noqa: ANN001, ANN202
        return table_and_lists(export_value, delete_value, stats_value, access.hidden_datasets(ws, request))

    refresh_outputs = [table, *ds_dropdowns]

    def on_load(export_value, delete_value, stats_value, request: gr.Request):  # noqa: ANN001, ANN202
        admin = is_admin(ws, request)
        return (
            *refresh_all(export_value, delete_value, stats_value, request),
            gr.update(visible=admin),
            gr.update(visible=not admin),
        )

    blocks.load(
        on_load, ds_dropdowns, [*refresh_outputs, admin_col, admin_note], api_visibility="private"
    ).then(stats.compute, stats.inputs, stats.outputs, api_visibility="private")
    refresh_btn.click(refresh_all, ds_dropdowns, refresh_outputs, api_visibility="private")
    if tab is not None:
        tab.select(refresh_all, ds_dropdowns, refresh_outputs, api_visibility="private")

    # statistics follow the chosen dataset (a row click or the dropdown)
    def pick_row(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        return gr.update(value=row[0]) if row else gr.skip()

    table.select(pick_row, None, stats_ds, api_visibility="private").then(
        stats.compute, stats.inputs, stats.outputs, api_visibility="private"
    )
    stats_ds.input(stats.compute, stats.inputs, stats.outputs, api_visibility="private")

    # export kinds follow the chosen dataset
    def export_kinds(name: str | None, request: gr.Request) -> Any:
        if not is_admin(ws, request):  # an admin control: it tells which kinds a dataset holds
            return gr.skip()
        summaries = {s.name: s for s in all_summaries(ws)}
        kinds = sorted(summaries[name].captions, key=kind_sort_key) if name in summaries else []
        return gr.update(choices=[ALL_KINDS, *kinds], value=ALL_KINDS)

    export_ds.change(export_kinds, export_ds, export_kind, api_visibility="private")

    # ------------------------------------------------------------------ admin actions

    def do_import(
        path: str | None,
        files: list[Any] | None,
        dataset: str | None,
        fmt: str | None,
        image_column: str | None,
        caption_column: str | None,
        pixels: float | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's injection pattern
    ):
        require_admin_ui(ws, request)
        from backend.ingest import SourceError, import_source

        path = (path or "").strip()
        files = [f for f in files or [] if f]
        dataset = (dataset or "").strip()
        if not dataset:
            raise gr.Error("Name the dataset to import into.")
        if path and files:
            raise gr.Error("Give either a server path or uploaded files, not both.")
        if not path and not files:
            raise gr.Error("Give a server path or upload files to import.")
        staged: Path | None = None  # uploads are copied here and removed after the import
        if path:
            source = Path(path).expanduser()
            shown = str(source)
        else:
            try:
                source = stage_uploads(ws, files)
                staged = source if source.is_dir() else source.parent
            except UnsafePathError as exc:
                raise gr.Error(f"Upload refused: {exc}") from None
            shown = f"{len(files)} uploaded file{'s' if len(files) != 1 else ''}"
        progress((0, None), desc="checking the source")
        try:
            report = import_source(
                ws,
                source,
                dataset,
                fmt=fmt or "auto",
                image_column=(image_column or "").strip() or None,
                caption_column=(caption_column or "").strip() or None,
                max_pixels=int(pixels or DEFAULT_MAX_PIXELS),
                progress=_gradio_progress(progress),
            )
        except SourceError as exc:
            raise gr.Error(f"Cannot import: {exc}") from None
        finally:
            if staged is not None:  # the images now live in the content-addressed store
                shutil.rmtree(staged, ignore_errors=True)
        summary = report.as_dict()
        frame = skipped_frame(summary["skipped"])
        return (
            import_result_md(summary, shown),
            gr.update(value=frame, visible=bool(summary["skipped"])),
            *table_and_lists(dataset, None, dataset),
        )

    import_btn.click(
        do_import,
        [source_path, uploads, import_name, import_fmt, image_col, caption_col, max_pixels],
        [import_result, skipped, *refresh_outputs],
        api_name="import_dataset",
        concurrency_limit=1,
    ).success(stats.compute, stats.inputs, stats.outputs, api_visibility="private")

    def do_export(
        dataset: str | None, fmt: str | None, kind: str | None, name: str | None, request: gr.Request
    ):
        require_admin_ui(ws, request)
        from backend.export import ExportError, export_dataset

        if not dataset:
            raise gr.Error("Choose a dataset to export.")
        fmt = fmt or "jsonl"
        kind = None if not kind or kind == ALL_KINDS else kind
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        name = (name or "").strip() or f"{_safe_upload_name(dataset)}-{fmt}-{stamp}"
        try:
            out = safe_join(ws.exports_dir, name)
        except UnsafePathError as exc:
            raise gr.Error(f"Output must be a folder name under exports/: {exc}") from None
        try:
            summary = export_dataset(ws, dataset, fmt, out, kind=kind).as_dict()
        except ExportError as exc:
            raise gr.Error(f"Cannot export: {exc}") from None
        counts = ", ".join(f"{kind_label(k)}: {n:,}" for k, n in summary.get("captions", {}).items())
        return (
            f"**Exported {summary['images']:,} images** of **{html.escape(dataset)}** as {fmt} to "
            f"`{html.escape(str(summary['path']))}`" + (f" · captions: {counts}" if counts else "")
        )

    export_btn.click(
        do_export, [export_ds, export_fmt, export_kind, export_name], export_result, api_name="export_dataset"
    )

    def do_delete(dataset: str | None, confirm: bool, request: gr.Request):
        require_admin_ui(ws, request)
        if not dataset:
            raise gr.Error("Choose the dataset to delete.")
        if not confirm:
            raise gr.Error("Tick the confirmation box first: deleting a dataset cannot be undone.")
        try:
            images = delete_dataset(ws, dataset)
        except (DatasetNotFound, DatasetInUse) as exc:
            raise gr.Error(str(exc)) from None
        message = (
            f"**Deleted {html.escape(dataset)}**: {images:,} images with their captions and annotation work. "
            "The image files stay in the workspace's content-addressed store (other datasets may share them)."
        )
        return message, gr.update(value=False), *table_and_lists(None, None, None)

    delete_btn.click(
        do_delete,
        [delete_ds, delete_confirm],
        [delete_result, delete_confirm, *refresh_outputs],
        api_name="delete_dataset",
        concurrency_limit=1,
    ).success(stats.compute, stats.inputs, stats.outputs, api_visibility="private")
