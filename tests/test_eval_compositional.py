"""Issue 11's metrics through the real ``t2i_eval`` job and the ``recap-studio eval`` command line.

Acceptance on the demo world: images rendered from structured prompts
(:mod:`backend.compositional.demo_scenes`) score SOA-I = 1, CA = 0, PA = 1 with the oracle through
``eval --images``; the same images against shuffled prompts land on the mismatched-prompt
baseline. Tiny transformers detectors (closed and open vocabulary) and a tiny 248-position
CLIPModel run through the same job from ``from_pretrained`` on local folders; the ``--json``
contract's shape is asserted; a generated dataset keeps each image's structured prompt.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from backend import arena, jobs
from backend.compositional.demo_scenes import scene_for_prompt
from backend.compositional.loaders import load_any
from backend.datasets import get_dataset, get_or_create_dataset
from backend.db import migrate, read_session, write_session
from backend.demo import render_scene
from backend.evaluation import result_details
from backend.images import add_image, decode_image
from backend.jobs.configs import ConfigError, new_run
from backend.models import Image
from backend.recap_table import recap_table, to_csv, to_latex
from backend.users import add_user
from backend.workspace import Workspace
from tests.conftest import run_cli

pytest_plugins = ("tests.tiny_models",)

SEED = 3  # scenes and the shuffle; printed in failure messages
CONTRACT_FIELDS = {"value", "lower", "upper", "n", "chance"}
PROPORTIONS = ("soa_c", "soa_i", "pa_det", "pa_clip", "geneval", "rp")


def last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


def check_contract(entry: dict[str, Any]) -> None:
    """Every metric has the contract's fields; proportions and their intervals lie in [0, 1]."""
    for name, m in entry["metrics"].items():
        assert set(m) >= CONTRACT_FIELDS, (name, m)
        assert isinstance(m["n"], int) and m["n"] > 0, (name, m)
        if name.split(":")[0] in PROPORTIONS:
            for key in ("value", "lower", "upper", "chance"):
                assert m[key] is None or 0.0 <= m[key] <= 1.0, (name, key, m)
        if m["lower"] is not None:
            assert m["lower"] <= m["value"] + 1e-12 <= m["upper"] + 2e-12, (name, m)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every second demo-world prompt rendered as the scene it asks for (all six GenEval tags),
    with a structured prompt file naming each image, and a workspace holding the same images as a
    'real' reference dataset (for O-FID)."""
    root = tmp_path_factory.mktemp("demo-eval")
    images = root / "images"
    images.mkdir()
    prompts = list(load_any("demo_world"))[::2]
    lines = []
    for i, p in enumerate(prompts):
        name = f"img_{i:03d}.png"
        (images / name).write_bytes(render_scene(scene_for_prompt(p, seed=SEED)))
        lines.append({**p.to_json(), "file": name})
    matched = root / "matched.jsonl"
    matched.write_text("".join(json.dumps(x) + "\n" for x in lines))
    ws = Workspace(root / "home").ensure()
    migrate(ws)
    with write_session(ws) as s:
        ds = get_or_create_dataset(s, "demo-reference")
        for f in sorted(images.iterdir()):
            add_image(s, ws, int(ds.id), decode_image(f.read_bytes()), f.name)  # type: ignore[arg-type]
    return {"root": root, "images": images, "prompts": prompts, "lines": lines, "matched": matched, "ws": ws}


def eval_images(demo: dict[str, Any], prompts: Path, *extra: str) -> dict[str, Any]:
    proc = run_cli(
        demo["ws"].home, "eval", "--images", str(demo["images"]), "--prompts", str(prompts),
        "--detector", "oracle", "--device", "cpu", "--torch-threads", "1", "--bootstrap-rounds", "200",
        *extra, "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return last_json(proc.stdout)


def test_demo_world_from_its_prompts_is_perfect_with_the_oracle(
    demo: dict[str, Any], tiny_model_dir: Callable[[str], Path]
) -> None:
    tags = {p.tag for p in demo["prompts"]}
    assert {"counting", "position", "colors", "two_object"} <= tags, tags
    summary = eval_images(
        demo, demo["matched"], "--metrics", "soa,ca,pa,geneval,o_fid", "--reference-dataset", "demo-reference",
        "--extractor", "clip", "--clip-model", str(tiny_model_dir("longclip")),
    )  # fmt: skip
    assert summary["status"] == "succeeded" and summary["images"] == str(demo["images"])
    assert len(summary["metrics"]) == 1  # --images: one entry
    entry = summary["metrics"][0]
    check_contract(entry)
    m = entry["metrics"]
    n = len(demo["prompts"])
    assert {"soa_c", "soa_i", "ca", "pa_det", "pa_clip", "geneval", "o_fid"} <= set(m), sorted(m)
    assert m["soa_i"]["value"] == 1.0 and m["soa_c"]["value"] == 1.0 and m["soa_i"]["n"] == n, (SEED, m)
    assert m["ca"]["value"] == 0.0 and m["ca"]["upper"] == 0.0, (SEED, m["ca"])
    assert m["pa_det"]["value"] == 1.0, (SEED, m["pa_det"])
    assert m["geneval"]["value"] == 1.0, (SEED, m["geneval"])
    assert all(m[f"geneval:{t}"]["value"] == 1.0 for t in tags), (SEED, m)
    # chance level beside every number, far below the perfect score
    for name in ("soa_i", "pa_det", "geneval"):
        assert m[name]["chance"] is not None and m[name]["chance"] < 0.6, (SEED, name, m[name])
    assert m["ca"]["chance"] > 0.5, (SEED, m["ca"])
    # O-FID: the object crops against the same objects found in the same images as a reference
    assert m["o_fid"]["lower"] is None and m["o_fid"]["chance"] is None
    assert abs(m["o_fid"]["value"]) < 1e-3, m["o_fid"]
    rows = {r.metric: r for r in result_details(demo["ws"], int(summary["run_id"]))}
    oracle = rows["soa_i"].details["detector"]  # type: ignore[index]
    assert oracle["detector"] == "oracle:demo" and oracle["thresholds"]["min_blob"] > 0
    assert rows["soa_i"].details["structured_prompt_from"] == {"generation": 0, "prompts": n, "extracted": 0}  # type: ignore[index]
    assert rows["pa_clip"].details["context_length"] == 248  # the scorer's identity, not the config's tag  # type: ignore[index]
    assert rows["pa_clip"].weights.startswith("sha256:")


def test_the_same_images_against_shuffled_prompts_land_on_the_baseline(demo: dict[str, Any]) -> None:
    matched = eval_images(demo, demo["matched"], "--metrics", "soa,pa_det,geneval")["metrics"][0]["metrics"]
    order = list(range(len(demo["lines"])))
    rng = random.Random(SEED)
    while any(i == j for i, j in enumerate(order)):
        rng.shuffle(order)
    shuffled = demo["root"] / "shuffled.jsonl"
    lines = [{**demo["lines"][j], "file": demo["lines"][i]["file"]} for i, j in enumerate(order)]
    shuffled.write_text("".join(json.dumps(x) + "\n" for x in lines))
    got = eval_images(demo, shuffled, "--metrics", "soa,pa_det,geneval")["metrics"][0]["metrics"]
    for name in ("soa_c", "soa_i", "geneval"):
        low, high = matched[name]["chance_lower"], matched[name]["chance_upper"]
        assert low <= got[name]["value"] <= high, (name, SEED, got[name], matched[name])
        assert got[name]["upper"] < matched[name]["value"], (name, SEED)


def test_tiny_transformers_detectors_and_longclip_run_through_the_job(
    demo: dict[str, Any], tiny_model_dir: Callable[[str], Path]
) -> None:
    ws = demo["ws"]
    longclip = str(tiny_model_dir("longclip"))
    for family in ("detr", "owlv2"):
        folder = tiny_model_dir(family)
        run = new_run(ws, "t2i_eval", {
            "images": str(demo["images"]), "prompts": str(demo["matched"]), "detector": str(folder),
            "metrics": ["soa", "ca", "pa", "geneval", "clip_score", "r_precision"], "clip_model": longclip,
            "device": "cpu", "torch_threads": 1, "bootstrap_rounds": 50, "batch_size": 8,
        })  # fmt: skip
        final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
        assert final.status == "succeeded", jobs.log_tail(ws, int(run.id), 40)  # type: ignore[arg-type]
        rows = {r.metric: r for r in result_details(ws, int(run.id))}  # type: ignore[arg-type]
        assert {"soa_c", "soa_i", "clip_score", "r_precision", "pa_clip"} <= set(rows), (family, sorted(rows))
        prov = rows["soa_i"].details["detector"]  # type: ignore[index]
        assert prov["detector"] == str(folder) and prov["family"] == family
        assert prov["kind"] == (
            "transformers-closed-vocabulary" if family == "detr" else "transformers-open-vocabulary"
        )
        assert prov["weights_sha256"] and rows["soa_i"].weights == prov["weights_sha256"]
        assert "score" in prov["thresholds"]
        # colours by CLIP zero-shot on the crops: the scorer is the long-position model
        assert prov["colors"] is not None
        clip = rows["clip_score"].details  # type: ignore[assignment]
        assert clip["context_length"] == 248 and clip["clip_backend"] == "transformers"  # type: ignore[index]
        assert (
            clip["clip_pretrained"].startswith("sha256:")
            and rows["clip_score"].weights == clip["clip_pretrained"]
        )  # type: ignore[index]
        assert clip["truncated_prompts"] == 0  # type: ignore[index]
        for r in rows.values():
            interval = r.details["interval"]  # type: ignore[index]
            assert set(interval) >= CONTRACT_FIELDS and math.isfinite(r.value)


def test_eval_options_are_checked(demo: dict[str, Any]) -> None:
    ws = demo["ws"]
    with pytest.raises(ConfigError, match="need a detector"):
        new_run(
            ws,
            "t2i_eval",
            {"images": str(demo["images"]), "prompts": str(demo["matched"]), "metrics": ["soa"]},
        )
    with pytest.raises(ConfigError, match="images needs prompts"):
        new_run(ws, "t2i_eval", {"images": str(demo["images"]), "metrics": ["soa"], "detector": "oracle"})
    with pytest.raises(ConfigError, match="not both"):
        new_run(ws, "t2i_eval", {
            "images": str(demo["images"]), "dataset": "demo-reference", "prompts": "demo_world", "detector": "oracle",
        })  # fmt: skip
    run = new_run(ws, "t2i_eval", {
        "images": str(demo["images"]), "prompts": "demo_world", "metrics": ["soa"], "detector": "oracle",
    })  # fmt: skip
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    assert final.status == "failed" and "must match" in (final.message or ""), final.message


def test_prompts_show_prints_what_the_extractor_read(tmp_path: Path) -> None:
    """``prompts show``: structured sets as given, captions with the phrases the extractor matched."""
    proc = run_cli(tmp_path / "home", "prompts", "show", "demo_world", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = last_json(proc.stdout)
    assert shown["prompts"] == len(list(load_any("demo_world"))) == len(shown["rows"])
    assert any(r["relations"] and r["tag"] == "position" for r in shown["rows"])
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"id": 7, "image_id": 1, "caption": "Two dogs to the left of a red car."}],
    }))  # fmt: skip
    proc = run_cli(tmp_path / "home", "prompts", "show", str(captions), "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = last_json(proc.stdout)["rows"]
    assert row["objects"] == "2x dog; red car", row
    assert "left of" in row["relations"] and "dogs→dog" in row["matched"], row
    proc = run_cli(tmp_path / "home", "prompts", "show", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_a_generated_dataset_keeps_each_structured_prompt_for_eval(
    demo: dict[str, Any], tiny_model_dir: Callable[[str], Path]
) -> None:
    """generate from the structured demo-world set (tiny SD), then ``eval --dataset generated-run-ID
    --metrics soa,ca,pa,geneval --detector oracle``: the requirements come from each image's record."""
    ws = demo["ws"]
    gen = new_run(ws, "generate", {
        "prompts": "demo_world", "category": "position", "max_prompts": 3, "checkpoints": [str(tiny_model_dir("sd"))],
        "seeds": [0, 1], "regime": "raw", "inference_steps": 2, "batch_size": 6, "device": "cpu", "torch_threads": 1,
    })  # fmt: skip
    final = jobs.run_foreground(ws, int(gen.id))  # type: ignore[arg-type]
    assert final.status == "succeeded", jobs.log_tail(ws, int(gen.id), 40)  # type: ignore[arg-type]
    dataset = f"generated-run-{gen.id}"
    wanted = {p.prompt: p.to_json() for p in load_any("demo_world") if p.tag == "position"}
    with read_session(ws) as s:
        metas = [
            im.meta["generated"]
            for im in s.exec(select(Image).where(Image.dataset_id == get_dataset(s, dataset).id))
        ]
    assert len(metas) == 6
    assert all(m["structured"] == wanted[m["prompt"]] for m in metas)
    proc = run_cli(
        ws.home, "eval", "--dataset", dataset, "--metrics", "soa,ca,pa,geneval", "--detector", "oracle",
        "--clip-model", str(tiny_model_dir("longclip")), "--device", "cpu", "--bootstrap-rounds", "50", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    (entry,) = summary["metrics"]
    assert entry["regime"] == "raw" and entry["dataset"] == dataset
    check_contract(entry)
    m = entry["metrics"]
    assert {"soa_c", "soa_i", "pa_det", "pa_clip", "geneval", "geneval:position"} <= set(m), sorted(m)
    assert "ca" not in m  # position prompts state no counts: nothing to score, nothing stored
    assert m["soa_i"]["n"] == 6 and m["soa_i"]["n_prompts"] == 3
    rows = {r.metric: r for r in result_details(ws, int(summary["run_id"]))}
    assert rows["soa_i"].details["structured_prompt_from"] == {"generation": 6, "prompts": 0, "extracted": 0}  # type: ignore[index]
    # Results: RECAP's table of this dataset, with the human success rate of a verdict campaign
    arena.create_verdict_campaign(ws, "faithful?", datasets=[dataset], target_per_item=1)
    ann = add_user(ws, "judge", "annotator", "pw-123456789").id
    verdicts = 0
    while (ticket := arena.next_ticket(ws, "faithful?", ann)) is not None:
        arena.submit_vote(ws, ticket.token, ann, "yes" if verdicts % 2 == 0 else "no", 300)
        verdicts += 1
    assert verdicts == 6
    table = recap_table(ws, dataset)
    (row,) = table.rows
    assert table.human_campaign == "faithful?" and row.cells["human_success"].value == pytest.approx(0.5)
    assert [c.label for c in table.columns] == [
        "SOA-C",
        "SOA-I",
        "PA",
        "PA (CLIP)",
        "GenEval",
        "Human success",
    ]
    assert table.chance["soa_i"].value == pytest.approx(m["soa_i"]["chance"])
    assert row.cells["soa_i"].lower == pytest.approx(m["soa_i"]["lower"])
    shown = table.display()
    assert shown[-1][0] == "chance (mismatched prompts)" and len(shown) == 2
    exported = to_csv([table]).splitlines()
    assert exported[0].startswith(
        "dataset,checkpoint,regime,caption_condition,mix,captioner,soa_c,soa_c_lower"
    )
    assert len(exported) == 3 and "chance (mismatched prompts)" in exported[2]
    latex = to_latex([table])
    assert (
        "\\begin{tabular}" in latex
        and "SOA-I $\\uparrow$" in latex
        and "chance (mismatched prompts)" in latex
    )
