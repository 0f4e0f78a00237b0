"""The admin page of the Arena tab: the campaigns table, closing a campaign, and creating one
from generated datasets, folders + a prompts CSV, or the caption kinds of a dataset — pairwise,
or as a verdict campaign (one image and its prompt, faithful or not; its own button and endpoint,
``arena_create_verdict_campaign``, so the pairwise endpoint keeps its parameters).

Every handler checks the role on the server (:func:`studio.session.require_admin_ui`): the
page is only hidden for annotators, its endpoints exist for everyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from backend import arena as arena_api
from backend.datasets import all_summaries
from backend.review import caption_kinds
from backend.workspace import Workspace
from studio.arena_judge import open_campaigns
from studio.session import is_admin, require_admin_ui
from studio.ui_common import esc, int_or, no_change

SOURCES = ["Generated datasets", "Folders + prompts CSV", "Caption kinds of a dataset"]
JUDGING = ["Pairwise: which of two is better", "Verdicts: is one image faithful to its prompt"]
CAMPAIGN_HEADERS = [
    "campaign",
    "kind",
    "status",
    "systems",
    "pairs",  # verdict campaigns: images
    "gold pairs",
    "criteria",
    "per pair",
    "annotators",
    "judgments",
    "progress",
]
DEFAULT_CRITERIA = {
    "t2i": "overall preference\nprompt following",
    "caption": "describes the image better",
}


def campaigns_frame(ws: Workspace) -> pd.DataFrame:
    rows = [
        [
            c.name,
            c.kind,
            c.status,
            c.systems,
            c.pairs,
            c.gold_pairs,
            ", ".join(c.criteria),
            c.target_per_pair,
            c.annotators,
            c.judgments,
            f"{c.done} / {c.total} ({100.0 * c.done / c.total:.0f}%)" if c.total else "—",
        ]
        for c in arena_api.list_campaigns(ws)
    ]
    return pd.DataFrame(rows, columns=CAMPAIGN_HEADERS)


def _criteria(text: str, kind: str) -> list[str]:
    items = [line.strip() for line in (text or "").replace(";", "\n").splitlines() if line.strip()]
    return items or DEFAULT_CRITERIA[kind].splitlines()


def _share(value: Any, label: str) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{label} must be a number between 0 and 1.") from None
    if not 0.0 <= share < 1.0:
        raise gr.Error(f"{label} must be between 0 and 1 (it is {share}); e.g. 0.1 for 10%.")
    return share


@dataclass
class AdminPage:
    """The admin page's components (made by :func:`layout`, wired by :func:`wire`)."""

    campaigns_table: gr.Dataframe
    close_name: gr.Dropdown
    btn_close: gr.Button
    btn_refresh: gr.Button
    close_result: gr.Markdown
    source: gr.Radio
    gen_group: gr.Group
    gen_datasets: gr.Dropdown
    folder_group: gr.Group
    folder_root: gr.Textbox
    folder_csv: gr.Textbox
    caption_group: gr.Group
    cap_dataset: gr.Dropdown
    cap_kinds: gr.Dropdown
    cap_max: gr.Number
    new_name: gr.Textbox
    new_criteria: gr.Textbox
    new_target: gr.Number
    new_repeat: gr.Number
    new_gold: gr.Number
    btn_create: gr.Button
    create_result: gr.Markdown
    judging: gr.Radio
    verdict_group: gr.Group
    verdict_question: gr.Textbox
    verdict_elements: gr.Textbox
    verdict_baseline: gr.Textbox
    btn_create_verdict: gr.Button


def layout() -> AdminPage:
    """The admin page, inside the current tab."""
    campaigns_table = gr.Dataframe(
        headers=CAMPAIGN_HEADERS,
        interactive=False,
        label="Campaigns",
        elem_id="arena-campaigns",
    )
    with gr.Row(equal_height=True):
        close_name = gr.Dropdown(
            choices=[],
            label="Campaign",
            allow_custom_value=True,
            elem_id="arena-close-name",
            scale=2,
        )
        btn_close = gr.Button("Close campaign", variant="stop", elem_id="arena-btn-close", scale=0)
        btn_refresh = gr.Button("Refresh", elem_id="arena-btn-refresh", scale=0)
    gr.Markdown(
        "Closing is final: it unblinds the campaign (its datasets and results open to "
        "annotators), so it takes no more votes, not even on pairs already on screen.",
        elem_classes=["arena-help"],
    )
    close_result = gr.Markdown(elem_id="arena-close-result")
    gr.Markdown("### New campaign")
    judging = gr.Radio(JUDGING, value=JUDGING[0], label="Judging", elem_id="arena-new-judging")
    source = gr.Radio(SOURCES, value=SOURCES[0], label="Source", elem_id="arena-new-source")
    with gr.Group(visible=True) as gen_group:
        gen_datasets = gr.Dropdown(
            choices=[],
            multiselect=True,
            label="Generated datasets (one per generation run)",
            allow_custom_value=True,
            elem_id="arena-new-datasets",
        )
    with gr.Group(visible=False) as folder_group:
        folder_root = gr.Textbox(
            label="Images folder on the server (root/<system>/<file>)", elem_id="arena-new-root"
        )
        folder_csv = gr.Textbox(
            label="Prompts CSV on the server (system,file,prompt[,category][,seed][,caption_condition])",
            elem_id="arena-new-csv",
        )
    with gr.Group(visible=False) as caption_group, gr.Row():
        cap_dataset = gr.Dropdown(
            choices=[], label="Dataset", allow_custom_value=True, elem_id="arena-new-cap-dataset"
        )
        cap_kinds = gr.Dropdown(
            choices=[],
            multiselect=True,
            label="Caption kinds to compare (≥ 2)",
            allow_custom_value=True,
            elem_id="arena-new-cap-kinds",
        )
        cap_max = gr.Number(
            value=100, precision=0, minimum=1, label="Max images", elem_id="arena-new-cap-max"
        )
    with gr.Row():
        new_name = gr.Textbox(
            label="Campaign name",
            placeholder="e.g. t2i-study-1 (annotators see it: do not name systems in it)",
            elem_id="arena-new-name",
        )
        new_criteria = gr.Textbox(
            label="Criteria (one per line; empty = default)",
            lines=2,
            placeholder=DEFAULT_CRITERIA["t2i"],
            elem_id="arena-new-criteria",
        )
    with gr.Row():
        new_target = gr.Number(
            value=3, precision=0, minimum=1, label="Judgments per pair", elem_id="arena-new-target"
        )
        new_repeat = gr.Number(
            value=0.1,
            minimum=0,
            maximum=0.9,
            step=0.05,
            label="Repeat share (swapped sides)",
            elem_id="arena-new-repeat",
        )
        new_gold = gr.Number(
            value=0.0, minimum=0, maximum=0.9, step=0.05, label="Gold share", elem_id="arena-new-gold"
        )
    with gr.Group(visible=False) as verdict_group:
        with gr.Row():
            verdict_question = gr.Textbox(
                value=arena_api.DEFAULT_QUESTION,
                label="Question asked of every image",
                elem_id="arena-new-question",
            )
            verdict_baseline = gr.Textbox(
                label="Baseline system (optional: relative improvements are measured against it)",
                placeholder="a system name, e.g. the checkpoint trained on alt-texts",
                elem_id="arena-new-baseline",
            )
        verdict_elements = gr.Textbox(
            label=(
                "Required elements, offered as 'missing' ticks (optional): JSON Lines on the server, "
                '{"prompt": …, "elements": […]} or structured prompts (objects, relations; GenEval include)'
            ),
            elem_id="arena-new-elements",
        )
    btn_create = gr.Button("Create campaign", variant="primary", elem_id="arena-btn-create")
    btn_create_verdict = gr.Button(
        "Create verdict campaign", variant="primary", visible=False, elem_id="arena-btn-create-verdict"
    )
    create_result = gr.Markdown(elem_id="arena-create-result")

    return AdminPage(
        campaigns_table=campaigns_table,
        close_name=close_name,
        btn_close=btn_close,
        btn_refresh=btn_refresh,
        close_result=close_result,
        source=source,
        gen_group=gen_group,
        gen_datasets=gen_datasets,
        folder_group=folder_group,
        folder_root=folder_root,
        folder_csv=folder_csv,
        caption_group=caption_group,
        cap_dataset=cap_dataset,
        cap_kinds=cap_kinds,
        cap_max=cap_max,
        new_name=new_name,
        new_criteria=new_criteria,
        new_target=new_target,
        new_repeat=new_repeat,
        new_gold=new_gold,
        btn_create=btn_create,
        create_result=create_result,
        judging=judging,
        verdict_group=verdict_group,
        verdict_question=verdict_question,
        verdict_elements=verdict_elements,
        verdict_baseline=verdict_baseline,
        btn_create_verdict=btn_create_verdict,
    )


# --------------------------------------------------------------------------- handlers


def wire(ws: Workspace, blocks: gr.Blocks, adm: AdminPage, admin_tab: gr.Tab, campaign: gr.Dropdown) -> None:
    """The admin events; campaigns created or closed here update the judging page's ``campaign``."""

    def _admin_values() -> tuple[Any, ...]:
        names = [c.name for c in arena_api.list_campaigns(ws)]
        open_names = open_campaigns(ws)
        datasets = [d.name for d in all_summaries(ws)]
        return (
            campaigns_frame(ws),
            gr.update(choices=names, value=open_names[0] if open_names else (names[0] if names else None)),
            gr.update(choices=datasets),
            gr.update(choices=datasets),
        )

    admin_outputs = [adm.campaigns_table, adm.close_name, adm.gen_datasets, adm.cap_dataset]

    def admin_load(request: gr.Request):
        if not is_admin(ws, request):
            return no_change(len(admin_outputs))
        return _admin_values()

    blocks.load(admin_load, None, admin_outputs, api_visibility="private")

    def admin_refresh(request: gr.Request):
        require_admin_ui(ws, request)
        return _admin_values()

    adm.btn_refresh.click(admin_refresh, None, admin_outputs, api_visibility="private")
    admin_tab.select(admin_refresh, None, admin_outputs, api_visibility="private")

    def pick_source(choice: str, request: gr.Request):
        require_admin_ui(ws, request)
        kind = "caption" if choice == SOURCES[2] else "t2i"
        return (
            gr.update(visible=choice == SOURCES[0]),
            gr.update(visible=choice == SOURCES[1]),
            gr.update(visible=choice == SOURCES[2]),
            gr.update(placeholder=DEFAULT_CRITERIA[kind]),
        )

    adm.source.input(
        pick_source,
        adm.source,
        [adm.gen_group, adm.folder_group, adm.caption_group, adm.new_criteria],
        api_visibility="private",
    )

    def pick_caption_dataset(name: str | None, request: gr.Request):
        require_admin_ui(ws, request)
        if not name:
            return gr.update(choices=[], value=[])
        try:
            kinds = caption_kinds(ws, name)
        except (ValueError, LookupError) as exc:  # DatasetNotFound: say which
            raise gr.Error(f"Dataset {name!r}: {exc}") from None
        return gr.update(choices=kinds, value=[])

    adm.cap_dataset.input(pick_caption_dataset, adm.cap_dataset, adm.cap_kinds, api_visibility="private")

    def create_campaign(
        src: str,
        name: str,
        criteria_text: str,
        target: Any,
        repeat: Any,
        gold: Any,
        datasets: list[str] | None,
        root: str,
        prompts_csv: str,
        dataset: str | None,
        kinds: list[str] | None,
        max_images: Any,
        request: gr.Request,
    ):
        """Create an arena campaign (admins only)."""
        user = require_admin_ui(ws, request)
        name = (name or "").strip()
        if not name:
            raise gr.Error("Give the campaign a name.")
        target_n = int_or(target, 0)
        if target_n < 1:
            raise gr.Error("Judgments per pair must be at least 1.")
        common = {
            "target_per_pair": target_n,
            "repeat_share": _share(repeat, "Repeat share"),
            "gold_share": _share(gold, "Gold share"),
            "created_by": user.id,
        }
        try:
            if src == SOURCES[2]:
                if not dataset:
                    raise gr.Error("Choose the dataset whose captions are compared.")
                if not kinds or len(kinds) < 2:
                    raise gr.Error("Choose at least two caption kinds to compare.")
                made = arena_api.create_caption_campaign(
                    ws,
                    name,
                    dataset,
                    list(kinds),
                    criteria=_criteria(criteria_text, "caption"),
                    max_images=max(1, int_or(max_images, 100)),
                    **common,
                )
            elif src == SOURCES[1]:
                if not (root or "").strip() or not (prompts_csv or "").strip():
                    raise gr.Error("Give both the images folder and the prompts CSV (paths on the server).")
                made = arena_api.create_campaign_from_folders(
                    ws,
                    name,
                    Path(root.strip()),
                    Path(prompts_csv.strip()),
                    _criteria(criteria_text, "t2i"),
                    **common,
                )
            else:
                if not datasets:
                    raise gr.Error("Choose at least one generated dataset.")
                made = arena_api.create_campaign_from_generated(
                    ws, name, list(datasets), _criteria(criteria_text, "t2i"), **common
                )
        except gr.Error:
            raise
        except (ValueError, LookupError, OSError) as exc:
            raise gr.Error(f"Campaign not created: {exc}") from None
        message = f"Created **{esc(made.name)}**."
        return (message, *_admin_values(), gr.update(choices=open_campaigns(ws)))

    adm.btn_create.click(
        create_campaign,
        [
            adm.source,
            adm.new_name,
            adm.new_criteria,
            adm.new_target,
            adm.new_repeat,
            adm.new_gold,
            adm.gen_datasets,
            adm.folder_root,
            adm.folder_csv,
            adm.cap_dataset,
            adm.cap_kinds,
            adm.cap_max,
        ],
        [adm.create_result, *admin_outputs, campaign],
        api_name="arena_create_campaign",
    )

    def close(name: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Close an arena campaign for good (admins only): no new pairs, no more votes."""
        require_admin_ui(ws, request)
        if not name:
            raise gr.Error("Choose the campaign first.")
        try:
            arena_api.close_campaign(ws, name)
        except (ValueError, LookupError) as exc:
            raise gr.Error(str(exc)) from None
        return (f"Closed **{esc(name)}**.", *_admin_values(), gr.update(choices=open_campaigns(ws)))

    def pick_judging(choice: str, request: gr.Request):
        """Pairwise or verdicts: the fields and the create button of that kind."""
        require_admin_ui(ws, request)
        verdict = choice == JUDGING[1]
        return (
            gr.update(visible=verdict),
            gr.update(visible=not verdict),
            gr.update(visible=verdict),
            gr.update(visible=not verdict),
            gr.update(visible=not verdict),
            gr.update(label="Verdicts per image" if verdict else "Judgments per pair"),
            gr.update(label="Repeat share (asked again)" if verdict else "Repeat share (swapped sides)"),
        )

    adm.judging.input(
        pick_judging,
        adm.judging,
        [
            adm.verdict_group,
            adm.btn_create,
            adm.btn_create_verdict,
            adm.new_criteria,
            adm.new_gold,
            adm.new_target,
            adm.new_repeat,
        ],
        api_visibility="private",
    )

    def create_verdict_campaign(
        src: str,
        name: str,
        question: str,
        target: Any,
        repeat: Any,
        datasets: list[str] | None,
        root: str,
        prompts_csv: str,
        elements: str,
        baseline: str,
        request: gr.Request,
    ):
        """Create a verdict campaign: one image and its prompt, faithful or not (admins only)."""
        user = require_admin_ui(ws, request)
        name = (name or "").strip()
        if not name:
            raise gr.Error("Give the campaign a name.")
        target_n = int_or(target, 0)
        if target_n < 1:
            raise gr.Error("Verdicts per image must be at least 1.")
        if src == SOURCES[2]:
            raise gr.Error(
                "Verdicts judge images against their prompts: choose generated datasets or folders."
            )
        source: dict[str, Any]
        if src == SOURCES[1]:
            if not (root or "").strip() or not (prompts_csv or "").strip():
                raise gr.Error("Give both the images folder and the prompts CSV (paths on the server).")
            source = {"root": Path(root.strip()), "prompts_csv": Path(prompts_csv.strip())}
        else:
            if not datasets:
                raise gr.Error("Choose at least one generated dataset.")
            source = {"datasets": list(datasets)}
        try:
            made = arena_api.create_verdict_campaign(
                ws,
                name,
                **source,
                question=(question or "").strip() or arena_api.DEFAULT_QUESTION,
                elements_file=Path(elements.strip()) if (elements or "").strip() else None,
                target_per_item=target_n,
                repeat_share=_share(repeat, "Repeat share"),
                baseline=(baseline or "").strip() or None,
                created_by=user.id,
            )
        except (ValueError, LookupError, OSError) as exc:
            raise gr.Error(f"Campaign not created: {exc}") from None
        ticks = (made.meta or {}).get("elements") or {}
        message = (
            f"Created verdict campaign **{esc(made.name)}** (missing-element ticks for "
            f"{ticks.get('prompts_with_elements', 0)} of {ticks.get('prompts', 0)} prompts)."
        )
        return (message, *_admin_values(), gr.update(choices=open_campaigns(ws)))

    adm.btn_create_verdict.click(
        create_verdict_campaign,
        [
            adm.source,
            adm.new_name,
            adm.verdict_question,
            adm.new_target,
            adm.new_repeat,
            adm.gen_datasets,
            adm.folder_root,
            adm.folder_csv,
            adm.verdict_elements,
            adm.verdict_baseline,
        ],
        [adm.create_result, *admin_outputs, campaign],
        api_name="arena_create_verdict_campaign",
    )

    status_outputs = [adm.close_result, *admin_outputs, campaign]
    adm.btn_close.click(close, adm.close_name, status_outputs, api_name="arena_close_campaign")
