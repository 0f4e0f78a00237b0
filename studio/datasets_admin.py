"""The admin actions of the Datasets tab: import (a server path or uploaded files), export
and delete, each checked on the server with :func:`studio.session.require_admin_ui`.

Uploads are copied under the workspace's ``uploads/`` (a new folder per import), so the import
reads from inside the workspace and nothing is written elsewhere; export writes only under
``exports/``. Import runs with a ``gr.Progress`` bar fed by the backend's progress callback.
"""

from __future__ import annotations

import html
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
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
from studio.session import is_admin, require_admin_ui
from studio.tab_review import StatsSection

IMPORT_FORMATS = ["auto", "folder", "table", "webdataset", "hf"]
EXPORT_FORMATS = ["jsonl", "parquet", "webdataset", "hf", "folder"]
ALL_KINDS = "(every kind)"
_SAFE_NAME = re.compile(r"[^\w.\-]+")
# What the upload box takes (checked by Gradio on the server too): images, caption sidecars,
# one table, or shards: the importer's own formats, nothing else.
UPLOAD_FILE_TYPES = sorted({*IMAGE_SUFFIXES, *SIDECAR_SUFFIXES, *TABLE_SUFFIXES, *SHARD_SUFFIXES})


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


# --------------------------------------------------------------------------- layout


@dataclass
class AdminControls:
    """The import, export and delete controls (made by :func:`layout`, wired by :func:`wire`)."""

    source_path: gr.Textbox
    uploads: gr.File
    import_name: gr.Textbox
    import_fmt: gr.Dropdown
    image_col: gr.Textbox
    caption_col: gr.Textbox
    max_pixels: gr.Number
    import_btn: gr.Button
    import_result: gr.Markdown
    skipped: gr.Dataframe
    export_ds: gr.Dropdown
    export_fmt: gr.Dropdown
    export_kind: gr.Dropdown
    export_name: gr.Textbox
    export_btn: gr.Button
    export_result: gr.Markdown
    delete_ds: gr.Dropdown
    delete_confirm: gr.Checkbox
    delete_btn: gr.Button
    delete_result: gr.Markdown


def layout() -> AdminControls:
    """The three admin accordions, inside the current (admin-only) column."""
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

    return AdminControls(
        source_path=source_path,
        uploads=uploads,
        import_name=import_name,
        import_fmt=import_fmt,
        image_col=image_col,
        caption_col=caption_col,
        max_pixels=max_pixels,
        import_btn=import_btn,
        import_result=import_result,
        skipped=skipped,
        export_ds=export_ds,
        export_fmt=export_fmt,
        export_kind=export_kind,
        export_name=export_name,
        export_btn=export_btn,
        export_result=export_result,
        delete_ds=delete_ds,
        delete_confirm=delete_confirm,
        delete_btn=delete_btn,
        delete_result=delete_result,
    )


# --------------------------------------------------------------------------- handlers


def wire(
    ws: Workspace,
    ctl: AdminControls,
    table_and_lists: Callable[..., tuple[Any, ...]],
    refresh_outputs: list[Any],
    stats: StatsSection,
) -> None:
    """The admin events. ``table_and_lists(export, delete, stats)`` gives the values of
    ``refresh_outputs`` (the datasets table and its dropdowns) after an import or a delete."""

    # export kinds follow the chosen dataset
    def export_kinds(name: str | None, request: gr.Request) -> Any:
        if not is_admin(ws, request):  # an admin control: it tells which kinds a dataset holds
            return gr.skip()
        summaries = {s.name: s for s in all_summaries(ws)}
        kinds = sorted(summaries[name].captions, key=kind_sort_key) if name in summaries else []
        return gr.update(choices=[ALL_KINDS, *kinds], value=ALL_KINDS)

    ctl.export_ds.change(export_kinds, ctl.export_ds, ctl.export_kind, api_visibility="private")

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

    ctl.import_btn.click(
        do_import,
        [
            ctl.source_path,
            ctl.uploads,
            ctl.import_name,
            ctl.import_fmt,
            ctl.image_col,
            ctl.caption_col,
            ctl.max_pixels,
        ],
        [ctl.import_result, ctl.skipped, *refresh_outputs],
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

    ctl.export_btn.click(
        do_export,
        [ctl.export_ds, ctl.export_fmt, ctl.export_kind, ctl.export_name],
        ctl.export_result,
        api_name="export_dataset",
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

    ctl.delete_btn.click(
        do_delete,
        [ctl.delete_ds, ctl.delete_confirm],
        [ctl.delete_result, ctl.delete_confirm, *refresh_outputs],
        api_name="delete_dataset",
        concurrency_limit=1,
    ).success(stats.compute, stats.inputs, stats.outputs, api_visibility="private")
