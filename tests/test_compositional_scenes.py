"""Demo-world scenes drawn from structured prompts, and (when the detectors package is present)
the acceptance check end to end: rendered from their prompts, the images score perfectly with
the oracle detector; against shuffled prompts they land on the mismatched baseline."""

from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image

from backend.compositional.demo_scenes import SceneError, scene_for_prompt
from backend.compositional.loaders import load_any
from backend.compositional.metrics import mismatched_assignment, score_detections
from backend.compositional.prompts import ObjectSpec, StructuredPrompt
from backend.compositional.spatial import relative_position
from backend.demo import _LOW_CONTRAST, SIZE, SIZES, render_scene

SEED = 11


def _box(o: dict) -> tuple[float, float, float, float]:
    h = SIZES[o["size"]] / 2
    return ((o["x"] - h) / SIZE, (o["y"] - h) / SIZE, (o["x"] + h) / SIZE, (o["y"] + h) / SIZE)


def test_scenes_do_what_each_demo_prompt_asks() -> None:
    for p in load_any("demo_world"):
        scene = scene_for_prompt(p, seed=SEED)
        objs = scene["objects"]
        assert len(objs) == sum(o.count for o in p.objects), p.key
        start = 0
        groups = []
        for spec in p.objects:
            group = objs[start : start + spec.count]
            start += spec.count
            assert all(o["shape"] == spec.cls for o in group), p.key
            assert spec.color is None or all(o["color"] == spec.color for o in group), p.key
            assert not any(o["color"] in _LOW_CONTRAST[scene["background"]] for o in group), p.key
            groups.append(group)
        for r in p.relations:
            for a, b in itertools.product(groups[r.subject], groups[r.object]):
                assert r.relation in relative_position(_box(a), _box(b)), (p.key, SEED)
        for a, b in itertools.combinations(objs, 2):  # boxes never touch: blobs never merge
            ha, hb = SIZES[a["size"]] / 2, SIZES[b["size"]] / 2
            assert max(abs(a["x"] - b["x"]), abs(a["y"] - b["y"])) > ha + hb, (p.key, SEED)
        if "on a beige background" in p.prompt:
            assert scene["background"] == "beige"
    assert scene_for_prompt(p, seed=SEED) == scene_for_prompt(p, seed=SEED)


def test_scene_errors_are_specific() -> None:
    with pytest.raises(SceneError, match="'cat' is not a demo-world shape"):
        scene_for_prompt(StructuredPrompt("a cat", (ObjectSpec("cat"),)))
    with pytest.raises(SceneError, match="'teal' is not a demo-world colour"):
        scene_for_prompt(StructuredPrompt("a teal circle", (ObjectSpec("circle", 1, "teal"),)))
    with pytest.raises(SceneError, match="could not place"):
        scene_for_prompt(StructuredPrompt("nine large squares", (ObjectSpec("square", 9),)), seed=SEED)


def test_oracle_scores_rendered_prompts_perfectly_and_shuffled_at_chance() -> None:
    detectors = pytest.importorskip(
        "training.detectors", reason="the detectors package is not in this checkout"
    )
    oracle = detectors.load_detector("oracle")
    demo = load_any("demo_world").prompts
    index = list(range(len(demo)))
    images = [Image.open(io.BytesIO(render_scene(scene_for_prompt(p, seed=SEED)))) for p in demo]
    dets = oracle.detect(images, [[o.cls for o in p.objects] for p in demo])
    got = score_detections(demo, dets, index, rounds=300, seed=SEED)
    assert got["soa_i"].value == 1.0 and got["soa_c"].value == 1.0, SEED
    assert got["ca"].value == 0.0 and got["pa_det"].value == 1.0 and got["geneval"].value == 1.0, SEED
    targets = mismatched_assignment(index, SEED)
    assert targets is not None
    shuffled = score_detections(demo, dets, targets, rounds=300, seed=SEED, chance=False)
    for name in ("soa_c", "soa_i", "ca", "pa_det", "geneval"):
        assert shuffled[name].value == pytest.approx(got[name].chance), (name, SEED)
    assert got["soa_i"].chance < 0.7 and got["geneval"].chance < 0.3, SEED
