"""A tiny random Stable Diffusion pipeline, built offline from configs.

Why: T2I training, generation and evaluation must run through the real diffusers code paths
(``StableDiffusionPipeline.from_pretrained``, the UNet/VAE/CLIP text encoder, the scheduler,
``save_pretrained``) on a machine that cannot download weights. So the SD 1.x layout is rebuilt
here at toy size: a two-level UNet with cross attention, a two-block VAE (scale factor 2, so the
pipeline's default image is 32 pixels), a two-layer CLIP text encoder with hidden size 32 and the
*exact* CLIP BPE tokenizer (model_max_length 77), rebuilt from the merges file open_clip bundles
(see ``backend/clip_tokens.py``). Token counting and truncation therefore behave as on a real
SD checkpoint, which the long-caption handling depends on.

``python -m training.tiny --family sd --out DIR`` builds one from the command line.
"""

from __future__ import annotations

from pathlib import Path

#: pipeline image side in pixels (UNet sample_size x VAE scale factor)
IMAGE_SIZE = 32
LATENT_SIZE = 16
TEXT_HIDDEN = 32

# SD 1.x noise schedule: the schedule every SD checkpoint ships with
_SD_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def build_clip_tokenizer(model_max_length: int = 77):
    """The real CLIP BPE tokenizer (49408 tokens) as a transformers ``CLIPTokenizer``.

    Vocabulary and merges come from ``backend.clip_tokens`` (which reads open_clip's bundled
    ``bpe_simple_vocab_16e6.txt.gz``), so ids match OpenAI CLIP and SD checkpoints exactly.
    """
    import json

    from transformers import CLIPTokenizer

    from backend.clip_tokens import clip_tokenizer

    model = json.loads(clip_tokenizer().to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def build_tiny_sd(out_dir: Path, seed: int = 0) -> Path:
    """Build a tiny random SD pipeline into ``out_dir`` (``save_pretrained`` layout) and return it.

    Same ``seed``, same weights. The folder holds unet/, vae/, text_encoder/, tokenizer/,
    scheduler/ (DDIM, the inference scheduler; training derives DDPM from its config) and
    model_index.json with no safety checker or feature extractor.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out_dir = Path(out_dir)
    tokenizer = build_clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=IMAGE_SIZE,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**_SD_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir)
    return out_dir
