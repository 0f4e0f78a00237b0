"""Long-text CLIP scores: a transformers CLIPModel with 248 text positions beside open_clip models.

A tiny random LongCLIP-style ``CLIPModel`` (``training.tiny`` family ``longclip``: the real CLIP BPE
tokenizer, 248 positions) is saved with ``save_pretrained`` and scored through ``load_clip`` and
through the real ``clip_score`` job (a queued run in its own process, real SQLite), the way a user's
LongCLIP folder or hub id would be.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from sqlmodel import select

from backend import jobs
from backend.clip_tokens import clip_token_count
from backend.db import read_session, write_session
from backend.demo import DEMO_DATASET
from backend.jobs.configs import new_run
from backend.models import Caption
from backend.scores import CaptionScore
from backend.workspace import Workspace
from training.clip import (
    ClipWeightsMissing,
    OpenClipScorer,
    TransformersClipScorer,
    build_tiny_clip,
    clip_backend,
    load_clip,
)
from training.detectors.weights import weights_sha256

pytest_plugins = ("tests.tiny_models", "tests.demo_workspace")
pytestmark = pytest.mark.timeout(300)

# one CLIP token per word: lengths are exact
SHARED_150 = "red " * 150
LONG_A, LONG_B = SHARED_150 + "blue " * 120, SHARED_150 + "green " * 120  # differ at token 151
PAST_248_A, PAST_248_B = "red " * 260 + "blue", "red " * 260 + "green"  # differ only past 248


@pytest.fixture(scope="module")
def longclip(tiny_model_dir: Callable[[str], Path]) -> Path:
    return tiny_model_dir("longclip")


def test_backend_is_chosen_by_the_model_reference(longclip: Path) -> None:
    assert clip_backend("ViT-B-32") == "open_clip"
    assert clip_backend("hf-hub:timm/ViT-B-16-SigLIP") == "open_clip"  # open_clip's own hub scheme
    assert clip_backend("zer0int/LongCLIP-L-Diffusers") == "transformers"  # a hub id
    assert clip_backend(str(longclip)) == "transformers"
    assert clip_backend("transformers:my-clip") == "transformers"
    with pytest.raises(
        ClipWeightsMissing, match="neither a folder nor a hub id in the local Hugging Face cache"
    ):
        load_clip("no-such-org/no-such-longclip")


def test_longclip_reads_248_tokens_where_open_clip_reads_77(longclip: Path, tmp_path: Path) -> None:
    scorer = load_clip(str(longclip))
    assert isinstance(scorer, TransformersClipScorer)
    assert scorer.context_length == 248 and scorer.model_name == str(longclip.resolve())
    assert scorer.pretrained == "sha256:" + weights_sha256(longclip)[:16]
    assert scorer.encoder.startswith("transformers ") and "248 text positions" in scorer.encoder
    assert scorer.token_count(LONG_A) == clip_token_count(LONG_A) == 272  # same BPE as open_clip's CLIP
    assert not scorer.truncated(SHARED_150) and scorer.truncated(LONG_A) and scorer.truncated(PAST_248_A)

    a, b, c, d = scorer.text_features([LONG_A, LONG_B, PAST_248_A, PAST_248_B])
    assert not torch.allclose(a, b, atol=1e-6)  # token 151 is read
    assert torch.allclose(c, d, atol=1e-6)  # the tail past 248 is not (truncated, no error)
    assert torch.allclose(a.norm(), torch.tensor(1.0), atol=1e-5)

    name, checkpoint = build_tiny_clip(tmp_path / "clip")
    short = load_clip(name, str(checkpoint))
    assert isinstance(short, OpenClipScorer) and short.context_length == 77
    assert short.encoder.startswith("open_clip ") and short.truncated(SHARED_150)
    a77, b77 = short.text_features([LONG_A, LONG_B])
    assert torch.allclose(a77, b77, atol=1e-6)  # 77-token CLIP cannot tell them apart

    from PIL import Image

    scores = scorer.score([Image.new("RGB", (48, 32), (200, 0, 0))] * 2, ["a red square", LONG_A])
    assert len(scores) == 2 and all(-100 <= s <= 100 for s in scores)


def run_job(ws: Workspace, kind: str, values: dict) -> jobs.Run:
    run = new_run(ws, kind, values)
    final = jobs.run_foreground(ws, int(run.id))  # type: ignore[arg-type]
    assert final.status == "succeeded", f"{final.message}\n{jobs.log_tail(ws, int(run.id), 60)}"
    return final


def test_clip_score_job_with_a_248_position_clipmodel(longclip: Path, demo_ws: Workspace) -> None:
    ws = demo_ws
    with write_session(ws) as s:
        s.add(Caption(image_id=1, kind="upsampled", text=LONG_A, source="test"))  # 272 tokens: cut at 248
        s.add(Caption(image_id=2, kind="upsampled", text=SHARED_150, source="test"))  # 152: read whole
    values = {"dataset": DEMO_DATASET, "kinds": ["human_long", "upsampled"], "model": str(longclip),
              "batch_size": 4, "torch_threads": 1}  # fmt: skip
    run = run_job(ws, "clip_score", values)
    with read_session(ws) as s:
        rows = s.exec(select(CaptionScore, Caption).join(Caption)).all()
    pretrained = "sha256:" + weights_sha256(longclip)[:16]
    assert len(rows) == run.total == run.done and len(rows) >= 8
    for score, caption in rows:
        assert (score.model, score.pretrained) == (str(longclip.resolve()), pretrained)
        assert score.truncated == (clip_token_count(caption.text) > 248) and -100 <= score.value <= 100
    assert sum(score.truncated for score, _ in rows) == 1  # only the 272-token text
    assert any(clip_token_count(c.text) > 77 and not s.truncated for s, c in rows)  # 77 < tokens <= 248
    metrics = {m.name: m.value for m in jobs.run_metrics(ws, int(run.id))}  # type: ignore[arg-type]
    assert metrics["truncated"] == 1 and metrics["context_length"] == 248
    log = jobs.log_tail(ws, int(run.id), 40)  # type: ignore[arg-type]
    assert "scored by transformers" in log and "(248 text positions); 1 truncated" in log

    again = run_job(ws, "clip_score", values)  # same model and weights: nothing new
    with read_session(ws) as s:
        assert not s.exec(select(CaptionScore.id).where(CaptionScore.run_id == again.id)).all()
