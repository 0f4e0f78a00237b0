"""Tiny random object detectors of each supported family, built offline from configs.

Why: tests must load detectors exactly as users do — ``from_pretrained`` on a folder with a
config, weights and a processor — without downloading anything. Each builder makes a toy model
(hidden 32, one or two layers, a few detection slots) with its real processor class and saves
both with ``save_pretrained``. Backbones are transformers ResNet configs (never timm weights).
Outputs are random; they test plumbing (shapes, label mapping, box conventions, provenance).

Closed vocabulary: ``detr``, ``yolos``, ``rt_detr`` (labels: the demo world's shapes and a few
COCO names, so label matching is exercised). Open vocabulary: ``owlv2`` (CLIP tokenizer with the
real vocabulary), ``grounding_dino`` (a BERT WordPiece vocabulary trained on the caption corpus).
``python -m training.tiny --family detr --out DIR`` builds one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: closed-vocabulary label set of the tiny detectors ("N/A" as COCO checkpoints have unused ids)
LABELS = ("N/A", "circle", "square", "triangle", "star", "diamond", "person", "dog", "dining table")
SLOTS = 10  # detection queries / tokens per image
SIDE = 32  # pixels the processors resize to


def _labels() -> dict[str, Any]:
    return {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}


def _save(model: Any, processor: Any, out_dir: Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _resnet(stages: int) -> Any:
    from transformers import ResNetConfig

    return ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 16][:stages],
        depths=[1] * stages,
        layer_type="basic",
        out_features=[f"stage{i}" for i in range(2, stages + 1)],
    )


def build_tiny_detr(out_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor

    torch.manual_seed(seed)
    config = DetrConfig(
        backbone_config=_resnet(2),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=SLOTS,
        **_labels(),
    )
    processor = DetrImageProcessor(size={"shortest_edge": SIDE, "longest_edge": 2 * SIDE})
    return _save(DetrForObjectDetection(config), processor, out_dir)


def build_tiny_yolos(out_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    torch.manual_seed(seed)
    config = YolosConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=[SIDE, SIDE],
        patch_size=8,
        num_detection_tokens=SLOTS,
        **_labels(),
    )
    processor = YolosImageProcessor(size={"shortest_edge": SIDE, "longest_edge": 2 * SIDE})
    return _save(YolosForObjectDetection(config), processor, out_dir)


def build_tiny_rt_detr(out_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    torch.manual_seed(seed)
    backbone = RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 16],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    config = RTDetrConfig(
        backbone_config=backbone,
        d_model=32,
        encoder_hidden_dim=32,
        encoder_in_channels=[16, 16, 16],
        encoder_ffn_dim=64,
        encoder_attention_heads=2,
        encoder_layers=1,
        decoder_layers=1,
        decoder_ffn_dim=64,
        decoder_attention_heads=2,
        decoder_in_channels=[32, 32, 32],
        decoder_n_points=2,
        num_queries=SLOTS,
        num_denoising=0,
        **_labels(),
    )
    processor = RTDetrImageProcessor(size={"height": SIDE, "width": SIDE})
    return _save(RTDetrForObjectDetection(config), processor, out_dir)


def build_tiny_owlv2(out_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    from training.tiny_sd import build_clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(model_max_length=16)
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = Owlv2Config(
        text_config={**layers, "max_position_embeddings": 16, "vocab_size": len(tokenizer)},
        vision_config={**layers, "image_size": SIDE, "patch_size": 8},
        projection_dim=32,
    )
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": SIDE, "width": SIDE}), tokenizer=tokenizer
    )
    return _save(Owlv2ForObjectDetection(config), processor, out_dir)


def build_tiny_grounding_dino(out_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    from training.tiny import train_wordpiece

    torch.manual_seed(seed)
    tokenizer = BertTokenizer(vocab=train_wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    text = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=_resnet(4),
        text_config=text,
        num_queries=SLOTS,
        encoder_layers=1,
        decoder_layers=2,  # the shared box-head weights are tied from layer 0 to the others
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        d_model=32,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": SIDE, "longest_edge": 2 * SIDE}),
        tokenizer=tokenizer,
    )
    return _save(GroundingDinoForObjectDetection(config), processor, out_dir)
