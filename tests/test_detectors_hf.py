"""transformers detectors through ``load_detector`` on local folders: plumbing end to end, offline.

Tiny random-weight checkpoints of each family (``training.tiny`` families detr, yolos, rt_detr,
owlv2, grounding_dino) are built with ``save_pretrained`` and loaded back with ``from_pretrained``
exactly as a user's folder or hub id would be. Their outputs are random, so these tests check
what does not depend on weights: the kind chosen from the config, query names and label
matching, box conventions, thresholds, provenance (weights hash), colours by CLIP on the crop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from training.detectors import Detector, DetectorError, load_detector
from training.detectors.hf import TransformersDetector, _clip_box, _grounding_text, _pad_scale

pytest_plugins = ("tests.tiny_models",)
pytestmark = pytest.mark.timeout(300)

CLOSED = ("detr", "yolos", "rt_detr")
OPEN = ("owlv2", "grounding_dino")
IMAGES = [Image.new("RGB", (64, 40), (200, 30, 30)), Image.new("RGB", (32, 48), (30, 30, 200))]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_boxes(found: list) -> None:
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0, d
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


@pytest.mark.parametrize("family", CLOSED)
def test_closed_vocabulary_detector_from_a_folder(family: str, tiny_model_dir: Callable[[str], Path]) -> None:
    folder = tiny_model_dir(family)
    det = load_detector(str(folder), thresholds={"score": 0.0})
    assert isinstance(det, TransformersDetector) and isinstance(det, Detector)
    prov = det.provenance()
    assert prov["detector"] == str(folder) and prov["kind"] == "transformers-closed-vocabulary"
    assert prov["family"] == family and prov["weights_sha256"] == sha256(folder / "model.safetensors")
    assert prov["thresholds"] == {"score": 0.0, "text": 0.25, "nms_iou": 1.0, "max_detections": 16}
    assert "circle" in det.known_labels() and "dining table" in det.known_labels()

    queries = [["circles", "a dog", "giraffe"], ["tables", "Person", "square"]]
    found = det.detect(IMAGES, queries)
    assert len(found) == 2
    for per_image, asked in zip(found, queries, strict=True):
        check_boxes(per_image)
        assert {d.cls for d in per_image} <= set(asked) - {"giraffe"}  # named as asked; unknown never
        assert all(d.color is None for d in per_image)  # no CLIP model given
    everything = det.detect(IMAGES)  # no queries: every label, by its own name
    assert all(d.cls in det.known_labels() for per_image in everything for d in per_image)
    assert sum(map(len, everything)) > 0  # score 0: every slot of a random model passes

    assert det.detect(IMAGES, queries) == found  # deterministic (eval mode)
    capped = load_detector(str(folder), thresholds={"score": 0.0, "max_detections": 2}).detect(IMAGES)
    assert all(len(per_image) <= 2 for per_image in capped)
    assert load_detector(str(folder), thresholds={"score": 1.0}).detect(IMAGES) == [[], []]


@pytest.mark.parametrize("family", OPEN)
def test_open_vocabulary_detector_takes_the_prompt_classes_as_queries(
    family: str, tiny_model_dir: Callable[[str], Path]
) -> None:
    folder = tiny_model_dir(family)
    det = load_detector(str(folder), thresholds={"score": 0.0, "text": 0.0})
    prov = det.provenance()
    assert prov["kind"] == "transformers-open-vocabulary" and prov["weights_sha256"] == sha256(
        folder / "model.safetensors"
    )
    # different numbers of queries per image: the shorter list is padded inside the batch, and a
    # padding query must never name a detection
    queries = [["red circle", "square", "dining table"], ["dog"]]
    found = det.detect(IMAGES, queries)
    for per_image, asked in zip(found, queries, strict=True):
        check_boxes(per_image)
        assert per_image and {d.cls for d in per_image} <= set(asked)
    assert det.detect(IMAGES, [[], ["dog"]])[0] == []
    with pytest.raises(DetectorError, match="open-vocabulary detector: it needs the classes"):
        det.detect(IMAGES)
    nms = load_detector(str(folder), thresholds={"score": 0.0, "text": 0.0, "nms_iou": 0.5}).detect(
        IMAGES, queries
    )
    assert all(len(a) <= len(b) for a, b in zip(nms, found, strict=True))


def test_colour_by_clip_zero_shot_on_the_box_crop(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    from training.clip import build_tiny_clip, load_clip

    name, checkpoint = build_tiny_clip(tmp_path / "clip")
    for clip in (load_clip(name, str(checkpoint)), str(tiny_model_dir("longclip"))):
        det = load_detector(
            str(tiny_model_dir("detr")), thresholds={"score": 0.0}, clip_model=clip, colors=["red", "blue"]
        )
        found = det.detect(IMAGES, [["circle", "square", "star"], ["dog"]])
        assert all(d.color in ("red", "blue") for per_image in found for d in per_image)
        colors = det.provenance()["colors"]
        assert colors["colors"] == ["red", "blue"] and "box crop" in colors["method"]
        assert colors["encoder"].startswith(("open_clip", "transformers"))


def test_bad_detector_specs_say_what_is_wrong(tiny_model_dir: Callable[[str], Path], tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="neither a folder nor a hub id in the local Hugging Face cache"):
        load_detector(str(tmp_path / "nowhere"))
    with pytest.raises(DetectorError, match="neither a folder nor a hub id"):
        load_detector("no-such-org/no-such-detector")
    with pytest.raises(DetectorError, match="'clip' checkpoint, not an object detector"):
        load_detector(str(tiny_model_dir("longclip")))
    with pytest.raises(DetectorError, match=r"unknown detector thresholds \['min_blob'\]"):
        load_detector(str(tiny_model_dir("detr")), thresholds={"min_blob": 3})
    with pytest.raises(DetectorError, match="out of range"):
        load_detector(str(tiny_model_dir("detr")), thresholds={"score": 2.0})


def test_box_conventions() -> None:
    # OWLv2 predicts on the image padded to a square at the bottom and right
    assert _pad_scale(Image.new("RGB", (200, 100))) == (1.0, 2.0)
    assert _clip_box((0.0, 0.0, 1.0, 0.5), _pad_scale(Image.new("RGB", (200, 100)))) == (0.0, 0.0, 1.0, 1.0)
    assert _clip_box((-0.2, 0.3, 1.4, 0.2)) == (0.0, 0.3, 1.0, 0.3)  # clipped, never inverted
    text, spans = _grounding_text(["Red circle", "dining  table", "a.b"])
    assert text == "red circle. dining table. a b."
    assert [text[a:b] for a, b in spans] == ["red circle", "dining table", "a b"]


def test_prompt_words_meet_detector_labels() -> None:
    from training.detectors import labels

    index = labels.label_index(
        ["person", "motorcycle", "dining table", "bus", "wine glass", "knife", "sheep", "tv"]
    )
    cases = {
        "people": "person",
        "two women": None,  # a count is not an article: the extractor strips counts, not this module
        "women": "person",
        "motorbikes": "motorcycle",
        "Dining_Table": "dining table",
        "tables": "dining table",
        "buses": "bus",
        "knives": "knife",
        "a sheep": "sheep",
        "glasses": "wine glass",
        "television": "tv",
        "giraffe": None,
    }
    assert {q: labels.match(q, index) for q in cases} == cases
