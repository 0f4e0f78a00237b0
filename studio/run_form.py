"""One form renderer and one launch handler for every job kind of the Runs tab.

Why generated: each setting used to be written as a component, a handler parameter, a dict key
and a place in a click-input list (``launch_t2i_train`` took 22 positional parameters fed by a
22-item list). Now :func:`render` draws a kind's form from its config declaration
(:mod:`backend.jobs.schema`): basic fields in rows, advanced ones in a collapsed section, each
component keyed by its field's name. The launch event passes the components to the handler by
name (Gradio's ``inputs_kwargs``), so a value can only land in the field it belongs to, and
:func:`launch` is the same for every kind: the values go to :func:`backend.jobs.configs.new_run`
(the CLI's validation) as the admin who clicked.

Element ids follow the names: form ``form-<kind>``, field ``<kind>-<field>``, button
``launch-<kind>`` (underscores as dashes). Dropdowns that name workspace things (a field's
``ref``: datasets, artifacts, prompt sets) are filled from :class:`ChoiceLists` when the forms
are drawn and again by :func:`choice_updates` on refresh.

The Runs tab draws the forms lazily (in a ``gr.render``, on the tab's first opening by an
admin): they are half of the studio's blocks, and Gradio pays for every block at start-up
several times over. So :func:`wire_forms` (the buttons, drawn with the forms) is separate from
:func:`wire_api` (the API endpoints, which exist from the start without any form component).

The API endpoints the forms always had (``launch_recaption``, …) keep their positional
parameters for scripts written against them (:data:`LEGACY_API`); ``launch_run`` takes any kind
and any of its settings by name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.components.api_component import Api

from backend import jobs
from backend.jobs import configs
from backend.jobs.kinds import JobKind
from backend.jobs.schema import FieldSpec
from backend.references import ArtifactKind
from backend.workspace import Workspace
from studio import run_forms
from studio.session import require_admin_ui

log = logging.getLogger(__name__)

PER_ROW = 4
#: hub ids offered beside the artifacts of a kind (the defaults users start from)
HUB_EXAMPLES: dict[str, list[str]] = {
    ArtifactKind.captioner: ["Salesforce/blip-image-captioning-base", "microsoft/git-base"],
    ArtifactKind.t2i: [configs.DEFAULT_T2I_BASE],
}
#: the positional parameters of each kind's API endpoint, frozen as scripts knew them before the
#: forms were generated. Names are config fields, except ``mix_custom`` (the old form's custom
#: weights box, used when ``mix`` is "custom") and ``fail_halfway`` (fail after half the items).
#: New settings are reachable by name through ``launch_run``.
LEGACY_API: dict[str, tuple[str, ...]] = {
    # the miniature kinds (issue 12) are new: their positional endpoints are simply their fields
    "miniature_world": ("dataset", "images", "human_images", "prompts", "seed"),
    "miniature_base": ("dataset", "size", "vae_steps", "vae_batch_size", "seed", "torch_threads"),
    "miniature": ("preset", "dataset", "seed"),
    "captioner_train": (
        "dataset", "base", "style", "both_mode", "lora", "lora_rank", "freeze_vision", "lr", "epochs",
        "batch_size", "grad_accum", "mixed_precision", "seed", "val_fraction", "eval_every",
        "max_new_tokens", "device", "clip_model", "clip_pretrained",
    ),
    "recaption": (
        "dataset", "captioner", "style", "prompt", "batch_size", "num_workers", "max_new_tokens",
        "num_beams", "dtype", "device",
    ),
    "clip_score": ("dataset", "kinds", "model", "pretrained", "batch_size", "device"),
    "t2i_train": (
        "dataset", "base", "mix", "mix_custom", "empty_prob", "train", "lora", "lora_rank", "lr_unet",
        "lr_text_encoder", "steps", "batch_size", "resolution", "ema", "cache_latents", "long_captions",
        "num_workers", "validation_prompts", "validation_every", "validation_inference_steps",
        "mixed_precision", "device",
    ),
    "generate": (
        "prompts", "checkpoints", "seeds", "regime", "upsampler", "upsample_template", "inference_steps",
        "guidance_scale", "max_prompts", "batch_size", "output_dataset", "device",
    ),
    "t2i_eval": (
        "dataset", "metrics", "clip_model", "clip_pretrained", "reference_dataset", "extractor",
        "extractor_weights", "device",
    ),
    "selftest": ("items", "delay_s", "fail_halfway"),
}  # fmt: skip
_LEGACY_ONLY = {"mix_custom": str, "fail_halfway": bool}


def slug(name: str) -> str:
    return name.replace("_", "-")


@dataclass
class Form:
    """A rendered form: its kind, one component per field (by name) and its launch button."""

    kind: JobKind
    components: dict[str, gr.components.Component]
    button: gr.Button

    def choice_fields(self) -> Iterator[tuple[FieldSpec, gr.components.Component]]:
        """The fields whose dropdown lists workspace things (filled on load)."""
        for spec in self.kind.fields:
            if spec.name in self.components and _listed(spec):
                yield spec, self.components[spec.name]


# --------------------------------------------------------------------------- rendering


def render(kind: JobKind, lists: ChoiceLists | None = None) -> Form:
    """The kind's form in an accordion: basic fields, then advanced ones, then the button.

    With ``lists``, the dropdowns naming workspace things start filled (else empty until
    :func:`choice_updates`)."""
    components: dict[str, gr.components.Component] = {}
    specs = [spec for spec in kind.fields if spec.ui]
    with gr.Accordion(kind.title, open=False, elem_id=f"form-{slug(kind.name)}"):
        if kind.intro:
            gr.Markdown(kind.intro)
        _render_fields(kind, [s for s in specs if s.group == "basic"], components, lists)
        advanced = [s for s in specs if s.group == "advanced"]
        if advanced:
            with gr.Accordion("Advanced settings", open=False, elem_id=f"{slug(kind.name)}-advanced"):
                _render_fields(kind, advanced, components, lists, info=True)
        button = gr.Button(kind.button, variant="primary", elem_id=f"launch-{slug(kind.name)}")
    return Form(kind, components, button)


def _render_fields(
    kind: JobKind,
    specs: list[FieldSpec],
    into: dict[str, gr.components.Component],
    lists: ChoiceLists | None,
    info: bool = False,
) -> None:
    """Rows of up to :data:`PER_ROW` fields; a multi-line text box takes a row of its own."""
    for row in _rows(specs):
        if len(row) == 1 and row[0].lines > 1:
            into[row[0].name] = component(kind, row[0], info, lists)
            continue
        with gr.Row():
            for spec in row:
                into[spec.name] = component(kind, spec, info, lists)


def _rows(specs: Iterable[FieldSpec]) -> Iterator[list[FieldSpec]]:
    row: list[FieldSpec] = []
    for spec in specs:
        if spec.lines > 1:
            if row:
                yield row
            yield [spec]
            row = []
            continue
        row.append(spec)
        if len(row) == PER_ROW:
            yield row
            row = []
    if row:
        yield row


def _listed(spec: FieldSpec) -> bool:
    """A field whose choices are the workspace's datasets, artifacts or prompt sets."""
    ref = spec.ref or ""
    return ref.startswith(("dataset", "artifact:")) or ref == "prompt_set"


def component(
    kind: JobKind, spec: FieldSpec, info: bool = False, lists: ChoiceLists | None = None
) -> gr.components.Component:
    """The component of one field, chosen by its type, choices and ``ref``."""
    common: dict[str, Any] = {
        "label": spec.label,
        "elem_id": f"{slug(kind.name)}-{slug(spec.name)}",
        "info": spec.help if info else None,
        # said outright: Gradio infers it from the events' inputs, which inside a gr.render
        # does not see the launch button's inputs by name, and drew the fields disabled
        "interactive": True,
    }
    default = spec.default
    if spec.base is bool:
        return gr.Checkbox(value=default, **common)
    if _listed(spec):
        value = default if default not in ("", []) else ([] if spec.is_list else None)
        choices: list[Any] = []
        if lists is not None:
            choices, picked = lists.pick(spec)
            value = value if picked is _KEEP else picked
        return gr.Dropdown(
            choices=choices, value=value, multiselect=spec.is_list, allow_custom_value=True, **common
        )
    if spec.choice_labels is not None:
        choices = list(spec.choice_labels)
        if spec.is_list and not spec.open_choices:
            return gr.CheckboxGroup(choices, value=list(default), **common)
        if spec.widget == "radio":
            return gr.Radio(choices, value=default, **common)
        return gr.Dropdown(
            choices,
            value=list(default) if spec.is_list else default,
            multiselect=spec.is_list,
            allow_custom_value=spec.open_choices,
            **common,
        )
    if spec.base in (int, float) and not spec.is_list:
        return gr.Number(
            value=default,
            precision=0 if spec.base is int else None,
            minimum=spec.minimum,
            maximum=spec.maximum,
            **common,
        )
    if spec.is_list:
        text = ("\n" if spec.lines > 1 else ",").join(map(str, default))
        return gr.Textbox(value=text, lines=spec.lines, **common)
    return gr.Textbox(value=default or "", lines=spec.lines, **common)


def form_values(kind: JobKind, raw: dict[str, Any]) -> dict[str, Any]:
    """The config values of what the form (or an API call) sent, by field name.

    An emptied box (None) takes the default; a multi-line list box is one entry per line; the
    rest is the config's to coerce and check.
    """
    values: dict[str, Any] = {}
    for spec in kind.fields:
        value = raw.get(spec.name)
        if value is None:
            continue
        if spec.is_list and spec.lines > 1 and isinstance(value, str):
            value = [line.strip() for line in value.splitlines() if line.strip()]
        values[spec.name] = value
    return values


# --------------------------------------------------------------------------- choices from the workspace


_KEEP = object()  # a dropdown keeps the value it has


@dataclass
class ChoiceLists:
    """What the dropdowns naming workspace things offer, read from the workspace once (per
    drawing of the forms, per refresh) and handed out per field by :meth:`pick`."""

    ws: Workspace
    datasets: dict[str, list[str]]

    @classmethod
    def read(cls, ws: Workspace) -> ChoiceLists:
        from backend.datasets import dataset_names

        names = dataset_names(ws)
        generated = run_forms.generated_datasets(ws)
        datasets = {
            "dataset": names,
            "dataset:real": [n for n in names if n not in generated],
            "dataset:generated": generated,
        }
        return cls(ws, datasets)

    def pick(self, spec: FieldSpec) -> tuple[list[Any], Any]:
        """The field's choices, and the value it should take (:data:`_KEEP`: the one it has).

        A required field that starts empty gets the first choice (the newest artifact, the
        first dataset); one with a default keeps it; an optional one stays empty.
        """
        from backend.compositional.loaders import builtin_sets
        from backend.prompt_sets import builtin_prompt_sets

        ref = spec.ref or ""
        if ref in self.datasets:
            choices: list[Any] = list(self.datasets[ref])
            first = choices[0] if choices else None
        elif ref == "prompt_set":  # plain shipped sets and structured ones (demo_world)
            choices, first = [*builtin_prompt_sets(), *builtin_sets()], None
        else:
            artifacts = configs.artifact_choices(self.ws, spec.artifact_kind or "")
            hubs = [(f"{hub_id}  (hub)", hub_id) for hub_id in HUB_EXAMPLES.get(spec.artifact_kind or "", [])]
            choices, first = [*artifacts, *hubs], (artifacts[0][1] if artifacts else None)
        # t2i_eval's dataset is optional (eval --images scores a folder instead) yet the form
        # evaluates datasets: it starts on the newest generated one, as a required field does
        if (spec.required or ref == "dataset:generated") and spec.default in ("", []):
            return choices, ([first] if first is not None else []) if spec.is_list else first
        return choices, _KEEP


def choice_updates(ws: Workspace, forms: Iterable[Form]) -> dict[gr.components.Component, Any]:
    """Fresh choices for every dropdown that lists workspace things, by component."""
    lists = ChoiceLists.read(ws)
    updates: dict[gr.components.Component, Any] = {}
    for form in forms:
        for spec, box in form.choice_fields():
            choices, value = lists.pick(spec)
            updates[box] = (
                gr.update(choices=choices) if value is _KEEP else gr.update(choices=choices, value=value)
            )
    return updates


# --------------------------------------------------------------------------- launching


def launch(ws: Workspace, kind: JobKind, values: dict[str, Any], request: gr.Request) -> jobs.Run:
    """Queue a run of ``kind`` with these settings as the calling admin; a bad one is a gr.Error."""
    user = require_admin_ui(ws, request)
    try:
        return configs.new_run(ws, kind.name, values, created_by=user.id)
    except configs.ConfigError as exc:
        raise gr.Error(str(exc)) from None


Started = Callable[[int], tuple[Any, ...]]


def wire_forms(ws: Workspace, forms: Iterable[Form], outputs: list[Any], started: Started) -> None:
    """Each form's button launches its kind with its components' values by name."""
    for form in forms:
        form.button.click(
            _form_handler(ws, form.kind, started),
            inputs_kwargs=form.components,
            outputs=outputs,
            api_visibility="private",
        )


def wire_api(ws: Workspace, kinds: Iterable[JobKind], outputs: list[Any], started: Started) -> None:
    """Each kind keeps its API endpoint (:data:`LEGACY_API`), and ``launch_run`` takes any kind
    by name; none needs a form on the page."""
    for kind in kinds:
        params = LEGACY_API[kind.name]
        gr.on(
            triggers=[],
            fn=_legacy_handler(ws, kind, params, started),
            inputs=[_api_input(kind, name) for name in params],
            outputs=outputs,
            api_name=kind.api_name,
            api_description=kind.help + " (admins only)",
        )

    def launch_run(kind: str, settings: dict, request: gr.Request) -> dict:
        """Queue a run of any kind with settings by name (admins only); returns the run's id and status."""
        require_admin_ui(ws, request)  # before saying anything about kinds
        try:
            job_kind = configs.job_kind(kind)
        except configs.ConfigError as exc:
            raise gr.Error(str(exc)) from None
        run = launch(ws, job_kind, dict(settings or {}), request)
        started(int(run.id))  # type: ignore[arg-type]
        run = jobs.get_run(ws, int(run.id))  # type: ignore[arg-type]
        return {"run_id": run.id, "kind": run.kind, "status": run.status, "config": run.config}

    gr.api(launch_run, api_name="launch_run")


def _form_handler(ws: Workspace, kind: JobKind, started: Started) -> Callable[..., tuple[Any, ...]]:
    def on_launch(request: gr.Request, **raw: Any) -> tuple[Any, ...]:
        run = launch(ws, kind, form_values(kind, raw), request)
        return started(int(run.id))  # type: ignore[arg-type]

    on_launch.__name__ = f"launch_{kind.name}_form"
    return on_launch


def _legacy_handler(
    ws: Workspace, kind: JobKind, params: tuple[str, ...], started: Started
) -> Callable[..., tuple[Any, ...]]:
    def on_call(request: gr.Request, *args: Any) -> tuple[Any, ...]:
        raw = dict(zip(params, args, strict=True))
        require_admin_ui(ws, request)  # before reading anything the caller sent
        run = launch(ws, kind, form_values(kind, from_legacy(raw)), request)
        return started(int(run.id))  # type: ignore[arg-type]

    on_call.__name__ = kind.api_name
    on_call.__doc__ = f"{kind.help} (admins only)"
    return on_call


def from_legacy(raw: dict[str, Any]) -> dict[str, Any]:
    """The old endpoints' extra parameters as config fields (see :data:`LEGACY_API`)."""
    values = dict(raw)
    custom = (values.pop("mix_custom", None) or "").strip()
    if values.get("mix") == "custom" or (not values.get("mix") and custom):
        if not custom:
            raise gr.Error(
                "Caption mix: you chose custom weights; type them, e.g. recap_short=0.3,recap_long=0.7"
            )
        values["mix"] = custom
    if values.pop("fail_halfway", False):
        values["fail_after"] = int(values.get("items") or 0) // 2
    return values


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}


def _api_input(kind: JobKind, name: str) -> Api:
    """An input of an API endpoint (no component on the page), typed and named for the API docs."""
    spec = next((s for s in kind.fields if s.name == name), None)
    base = spec.base if spec is not None else _LEGACY_ONLY[name]
    schema: dict[str, Any] = {"type": _JSON_TYPES[base]}
    if base is list:
        schema["items"] = {"type": _JSON_TYPES[spec.item or str]} if spec is not None else {}
    return Api(None, schema, name)
