"""The job kinds agree everywhere (issue 10): registry ⇄ schemas ⇄ Runs-tab forms ⇄ CLI commands.

A kind is declared once (:data:`backend.jobs.configs.KINDS`, fields with
:func:`backend.jobs.schema.opt`); the job registry, the forms and the CLI are built from it. These
tests read what was built — the real Gradio app's config, the real click command tree, the real
job modules — and check that every kind and every field shows up under its own name.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Optional

import pytest
import typer

from backend.jobs import configs
from backend.jobs.schema import ConfigError, coerce, fields_of, opt
from backend.workspace import Workspace

KIND_NAMES = list(configs.KINDS)


def test_every_kind_is_a_job_whose_module_has_run() -> None:
    from training.jobs import JOBS

    assert set(JOBS) == set(configs.KINDS)
    for name, kind in configs.KINDS.items():
        module = importlib.import_module(kind.module)
        assert callable(getattr(module, "run", None)), f"{kind.module} has no run(ctx)"
        assert JOBS[name].__name__ == f"{kind.module}.run"


def test_the_old_views_are_views_of_the_registry() -> None:
    assert set(configs.SCHEMAS) == set(configs.NEEDS_GPU) == set(configs.DEFAULTS) == set(configs.KINDS)
    for name, kind in configs.KINDS.items():
        assert configs.SCHEMAS[name] is kind.config and configs.NEEDS_GPU[name] is kind.needs_gpu
        assert configs.DEFAULTS[name] == dataclasses.asdict(kind.config())
    # model-free kinds: the self-test, the miniature corpus, and the experiment that drives its stages
    cpu_only = {"selftest", "miniature_world", "miniature"}
    assert {k for k in KIND_NAMES if not configs.NEEDS_GPU[k]} == cpu_only


@pytest.mark.parametrize("name", KIND_NAMES)
def test_every_field_is_declared_and_its_default_passes_its_own_checks(name: str) -> None:
    from backend.jobs.schema import check_field

    kind = configs.KINDS[name]
    names = [f.name for f in dataclasses.fields(kind.config)]
    specs = fields_of(kind.config)  # raises for a field declared without opt()
    assert [s.name for s in specs] == names
    for spec in specs:
        assert spec.label.strip() and spec.help.strip(), (name, spec.name)
        assert coerce(spec, spec.default) == spec.default, (name, spec.name)
        check_field(spec, spec.default)
        if spec.choices is not None and not spec.open_choices and spec.default not in (None, "", []):
            defaults = spec.default if spec.is_list else [spec.default]
            assert set(defaults) <= set(spec.choices), (name, spec.name)
    assert kind.summary(kind.defaults())  # the one-line summary reads any config of the kind


# --------------------------------------------------------------------------- the forms


@pytest.fixture(scope="module")
def app_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Gradio config of the real studio with its launch forms drawn, in developer mode (the
    self-test form too).

    The studio draws the forms in a ``gr.render`` when an admin first opens the Runs tab (they
    are half its blocks; start-up pays for every block). This config is the app's own, with the
    forms drawn into it by the same function that render calls, as a page gets them.
    """
    import gradio as gr

    from backend.db import migrate
    from studio import tab_runs
    from studio.app import build_app

    ws = Workspace(tmp_path_factory.mktemp("kinds") / "home").ensure()
    migrate(ws)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECAP_STUDIO_DEV", "1")
        app = build_app(ws)
        config = app.get_config_file()
        with gr.Blocks() as page:
            shown = gr.Markdown()
            tab_runs.draw_forms(ws, tab_runs.launch_kinds(), [shown], lambda run_id: (str(run_id),))
        drawn = page.get_config_file()
    assert not [c for c in config["components"] if str(c["props"].get("elem_id", "")).startswith("form-")], (
        "the launch forms are drawn when the Runs tab opens, not at start-up"
    )
    assert any(d.get("render_id") is not None for d in config["dependencies"]), "no render draws the forms"
    return {
        "components": config["components"] + drawn["components"],
        "dependencies": config["dependencies"] + drawn["dependencies"],
    }


@pytest.mark.parametrize("name", KIND_NAMES)
def test_every_kind_has_a_form_with_a_component_per_field(app_config: dict[str, Any], name: str) -> None:
    from studio.run_form import LEGACY_API, slug

    kind = configs.KINDS[name]
    by_elem = {
        c["props"]["elem_id"]: c for c in app_config["components"] if c.get("props", {}).get("elem_id")
    }
    assert f"form-{slug(name)}" in by_elem, "no form"
    button = by_elem[f"launch-{slug(name)}"]
    fields = {spec.name: by_elem.get(f"{slug(name)}-{slug(spec.name)}") for spec in kind.fields if spec.ui}
    missing = sorted(field for field, component in fields.items() if component is None)
    assert not missing, f"{name}: fields without a form component: {missing}"
    for spec in kind.fields:
        if spec.ui:
            assert fields[spec.name]["props"]["label"] == spec.label

    # the button passes exactly these components, each to the parameter of its field's name
    (click_dep,) = [
        d for d in app_config["dependencies"] if [button["id"], "click"] in map(list, d["targets"])
    ]
    assert sorted(click_dep["inputs"]) == sorted(c["id"] for c in fields.values())
    # the kind's API endpoint answers under its old name with its old parameters
    (api_dep,) = [d for d in app_config["dependencies"] if d.get("api_name") == kind.api_name]
    assert len(api_dep["inputs"]) == len(LEGACY_API[name])
    field_names = {spec.name for spec in kind.fields}
    assert set(LEGACY_API[name]) - field_names <= {"mix_custom", "fail_halfway"}


def test_the_forms_cover_the_kinds_and_nothing_else(app_config: dict[str, Any]) -> None:
    forms = {
        c["props"]["elem_id"].removeprefix("form-")
        for c in app_config["components"]
        if str(c.get("props", {}).get("elem_id", "")).startswith("form-")
    }
    assert forms == {name.replace("_", "-") for name in KIND_NAMES}
    assert any(d.get("api_name") == "launch_run" for d in app_config["dependencies"])


# --------------------------------------------------------------------------- the CLI


def _command(path: tuple[str, ...]) -> Any:
    """The click command typer builds for ``recap-studio PATH…`` (typer may bring its own click)."""
    from studio.cli import app

    command = typer.main.get_command(app)
    for part in path:
        assert hasattr(command, "commands"), path
        command = command.commands[part]
    return command


@pytest.mark.parametrize("name", KIND_NAMES)
def test_every_kind_has_a_command_with_an_option_per_field(name: str) -> None:
    kind = configs.KINDS[name]
    command = _command(kind.cli_command)
    assert command.hidden == kind.cli_hidden
    options = {p.name: p for p in command.params if p.param_type_name == "option"}
    for spec in kind.fields:
        if not spec.cli:
            continue
        option = options.get(spec.name)
        assert option is not None, f"{name}: no option for {spec.name}"
        assert option.opts[0] == spec.flag, (name, spec.name, option.opts)  # the flag is the key
        assert set(spec.aliases) <= set(option.opts), (name, spec.name)
        if spec.base is bool:
            assert f"--no-{spec.name.replace('_', '-')}" in option.secondary_opts
            assert set(spec.off_aliases) <= set(option.secondary_opts)
        assert option.required == (spec.required and spec.base is not bool), (name, spec.name)
        assert spec.help.rstrip(".") in (option.help or "")
    assert {"detach", "as_json"} <= set(options)


def test_no_two_options_of_a_command_share_a_flag() -> None:
    for kind in configs.KINDS.values():
        flags = [flag for p in _command(kind.cli_command).params for flag in (*p.opts, *p.secondary_opts)]
        assert len(flags) == len(set(flags)), kind.name


# --------------------------------------------------------------------------- types, not spellings


@dataclasses.dataclass
class _Typed:
    """Annotations the old string comparison let through unchecked (``Optional[str]``, ``list[str] | None``)."""

    a: Optional[str] = opt(None, label="a", help="a")  # noqa: UP045 - the spelling is the point
    b: list[str] | None = opt(None, label="b", help="b")
    c: list[int] = opt(label="c", help="c", default_factory=list)
    d: Optional[int] = opt(None, label="d", help="d", minimum=0)  # noqa: UP045


def test_coercion_reads_the_real_type_whatever_its_spelling() -> None:
    a, b, c, d = fields_of(_Typed)
    assert coerce(a, "x") == "x" and coerce(a, "  ") is None and coerce(a, None) is None
    with pytest.raises(ConfigError, match="a must be text or empty"):
        coerce(a, 5)
    assert coerce(b, "x, y") == ["x", "y"] and coerce(b, None) is None and coerce(b, ("z",)) == ["z"]
    with pytest.raises(ConfigError, match="b must be a list of names"):
        coerce(b, 3)
    assert coerce(c, "1,2") == [1, 2] and coerce(c, [3.0]) == [3]
    with pytest.raises(ConfigError, match="c must be a whole number"):
        coerce(c, ["1.5"])
    assert coerce(d, "4") == 4 and coerce(d, "") is None
    with pytest.raises(ConfigError, match="d must be a whole number"):
        coerce(d, "four")


def test_a_field_must_be_declared_and_refer_to_a_known_thing() -> None:
    @dataclasses.dataclass
    class Bare:
        x: int = 1

    with pytest.raises(TypeError, match="not declared with opt"):
        fields_of(Bare)
    with pytest.raises(ValueError, match="unknown ref"):
        opt("", label="x", help="x", ref="nowhere")


def test_the_workspace_check_follows_each_fields_ref(ws: Workspace) -> None:
    """Datasets, model references, prompt sets and files are checked by what the field refers to."""
    from backend.datasets import get_or_create_dataset
    from backend.db import write_session

    with write_session(ws) as s:
        get_or_create_dataset(s, "shapes")
    checked = configs.check_workspace(
        ws, "t2i_eval", configs.make_config("t2i_eval", {"dataset": "shapes", "reference_dataset": "shapes"})
    )
    assert checked["reference_dataset"] == "shapes"
    with pytest.raises(ConfigError, match="reference_dataset: no dataset named 'nope'"):
        configs.check_workspace(
            ws,
            "t2i_eval",
            configs.make_config("t2i_eval", {"dataset": "shapes", "reference_dataset": "nope"}),
        )
    with pytest.raises(ConfigError, match="extractor_weights '/no/such.pt' does not exist"):
        configs.check_workspace(
            ws,
            "t2i_eval",
            configs.make_config("t2i_eval", {"dataset": "shapes", "extractor_weights": "/no/such.pt"}),
        )
    with pytest.raises(ConfigError, match="prompts 'nope' is neither a shipped prompt set"):
        configs.check_workspace(
            ws, "generate", configs.make_config("generate", {"prompts": "nope", "checkpoints": ["org/sd"]})
        )
    generate = configs.check_workspace(
        ws, "generate", configs.make_config("generate", {"checkpoints": ["org/sd"]})
    )
    assert generate["checkpoints"] == ["org/sd"] and generate["prompts"] == "studio_prompts"
