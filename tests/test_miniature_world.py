"""The miniature world: the oracle reads exactly what is rendered, and the metrics score faithful renders perfectly.

Ground truth is checked against pixels only (``training.detectors.load_detector("oracle:miniature")``
never sees the scene), on a few hundred seeded scenes.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from backend.compositional.extract import Extractor
from backend.compositional.intervals import mismatched_prompts
from backend.compositional.metrics import score_detections
from backend.compositional.prompts import stated_counts
from backend.compositional.spatial import POSITION_MARGIN, relative_position
from backend.miniature.world import (
    BACKGROUND,
    MIN_GAP,
    MINIATURE_BACKGROUND,
    SIZE,
    VOCABULARY,
    Scene,
    WorldObject,
    held_out,
    render,
    sample_scene,
)
from training.detectors import load_detector
from training.detectors.oracle import OracleDetector

SEED = 20240612
N = 300


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    rng = random.Random(SEED)
    return [sample_scene(rng) for _ in range(N)]


@pytest.fixture(scope="module")
def oracle() -> OracleDetector:
    det = load_detector("oracle:miniature")
    assert isinstance(det, OracleDetector)
    return det


def test_oracle_reads_exactly_what_was_rendered(scenes: list[Scene], oracle: OracleDetector) -> None:
    counts = {1: 0, 2: 0, 3: 0}
    for scene in scenes:
        counts[len(scene.objects)] += 1
        analysis = oracle.analyse(render(scene))
        assert analysis.background == BACKGROUND and analysis.rejected == 0, scene
        truth = sorted((o.shape, o.color, o.box) for o in scene.objects)
        seen = sorted((b.shape, b.color, b.box) for b in analysis.blobs)
        assert [t[:2] for t in truth] == [s[:2] for s in seen], scene
        # boxes: the pixels at least half covered, read back within a pixel (triangles' left edge)
        assert all(
            max(abs(a - b) for a, b in zip(t[2], s[2], strict=True)) <= 1
            for t, s in zip(truth, seen, strict=True)
        )
    assert min(counts.values()) > N / 5  # 1, 2 and 3 objects all common


def test_scenes_keep_their_geometry(scenes: list[Scene]) -> None:
    """Objects never touch each other or the border, so the oracle never merges two of one colour."""
    for scene in scenes:
        for o in scene.objects:
            x0, y0, x1, y1 = o.nominal_box
            assert min(x0, y0) >= 1 and max(x1, y1) <= SIZE - 1
        for a, b in itertools.combinations(scene.objects, 2):
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.nominal_box, b.nominal_box
            assert max(bx0 - ax1, ax0 - bx1, by0 - ay1, ay0 - by1) >= MIN_GAP
    image = np.asarray(render(scenes[0]))
    assert image.shape == (SIZE, SIZE, 3)
    assert (image[0] == MINIATURE_BACKGROUND[BACKGROUND]).all()
    assert np.array_equal(image, np.asarray(render(scenes[0])))  # deterministic


def test_structured_prompt_is_the_truth_and_reads_back(scenes: list[Scene]) -> None:
    extractor = Extractor(VOCABULARY)
    with_relations = 0
    for scene in scenes:
        prompt = scene.structured(key="k")
        assert sum(o.count for o in prompt.objects) == len(scene.objects)
        assert stated_counts(prompt) == {(g.shape, g.color): g.count for g in scene.groups()}
        groups = scene.groups()
        for rel in prompt.relations:  # every relation holds for every pair, even at GenEval's margin
            for a in groups[rel.subject].members:
                for b in groups[rel.object].members:
                    assert rel.relation in relative_position(a.box, b.box, margin=POSITION_MARGIN)
        with_relations += bool(prompt.relations)
        read = extractor.extract(prompt.prompt)
        assert (read.objects, read.relations) == (prompt.objects, prompt.relations), prompt.prompt
        assert Scene.from_meta(scene.to_meta()) == scene
    assert with_relations > N / 3


def test_faithful_renders_score_perfectly_and_shuffled_prompts_sit_at_chance(
    scenes: list[Scene], oracle: OracleDetector
) -> None:
    prompts = [s.structured(key=str(i)) for i, s in enumerate(scenes)]
    detections = oracle.detect([render(s) for s in scenes])
    index = list(range(len(scenes)))
    faithful = score_detections(prompts, detections, index, rounds=200, seed=1)
    assert faithful["soa_i"].value == 1.0 and faithful["soa_c"].value == 1.0
    assert faithful["ca"].value == 0.0 and faithful["pa_det"].value == 1.0
    assert faithful["geneval"].value == 1.0
    assert faithful["soa_i"].chance < 0.8 and faithful["ca"].chance > 0.5 and faithful["pa_det"].chance < 0.5
    # images scored against another scene's prompt (a different shuffle) land near the chance level
    perm = mismatched_prompts(len(scenes), seed=3)  # another derangement than the baseline's
    shuffled = score_detections([prompts[int(j)] for j in perm], detections, index, rounds=200, chance=False)
    for metric in ("soa_i", "ca", "pa_det"):
        f, s = faithful[metric], shuffled[metric]
        assert abs(s.value - f.chance) <= 0.15 * max(1.0, f.chance), (metric, s.value, f.chance)
        assert s.upper >= f.chance_lower and s.lower <= f.chance_upper, metric  # intervals overlap


def test_held_out_split_is_by_layout_and_seeded() -> None:
    a = Scene((WorldObject("circle", "red", (0, 0), (1, 0)),))
    b = Scene((WorldObject("circle", "red", (0, 0), (0, -1)),))
    assert a.layout == b.layout == "r0c0 red circle"
    assert held_out(a, 1, 0.5) == held_out(b, 1, 0.5)  # jitter does not matter
    rng = random.Random(0)
    layouts = {s.layout: s for s in (sample_scene(rng) for _ in range(3000))}
    share = np.mean([held_out(s, 5, 0.1) for s in layouts.values()])
    assert len(layouts) > 1800 and 0.08 < share < 0.12
    with pytest.raises(ValueError, match="different cells"):
        Scene((WorldObject("circle", "red", (0, 0)), WorldObject("square", "blue", (0, 0))))
