"""The miniature-world SD builders make a pipeline folder that plain diffusers loads and runs.

Why: the T2I arms of issue 12 must hand ``t2i_train`` a ``base`` that
``StableDiffusionPipeline.from_pretrained`` loads, and the VAE must map 32 px images to 8 x 8 x 4
latents. Tiny sizes keep this test fast; the probe (``bench/miniature_t2i_probe.py``) trains them.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import torch

from backend.miniature.world import sample_scene
from training import miniature_sd as msd

VAE = msd.VAEConfig(block_out_channels=(8, 8, 16), norm_num_groups=4)
TEXT = msd.TextConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
UNET = msd.UNetConfig(block_out_channels=(16, 32), attention_heads=2, norm_num_groups=8, cross_attention_dim=16)


def test_vae_maps_32px_images_to_8x8x4_latents_and_back() -> None:
    scenes = [sample_scene(random.Random(i)) for i in range(2)]
    pixels = msd.images_tensor(scenes)
    assert pixels.shape == (2, 3, 32, 32) and pixels.min() >= -1 and pixels.max() <= 1
    torch.manual_seed(0)
    vae = msd.build_vae(VAE).eval()
    latents = msd.encode_latents(vae, pixels)
    assert latents.shape == (2, 4, msd.LATENT_SIZE, msd.LATENT_SIZE)
    assert msd.decode_latents(vae, latents).shape == (2, 3, 32, 32)


def test_a_pinned_posterior_makes_t2i_train_sample_the_latent_means() -> None:
    """``t2i_train`` samples mean + std * eps; the miniature VAE never trains its variance head, so
    the base stage pins it (the first cpu run trained on latents that were mostly this noise)."""
    from training.t2i.latents import sample_latents

    pixels = msd.images_tensor([sample_scene(random.Random(i)) for i in range(3)])
    torch.manual_seed(0)
    vae = msd.build_vae(VAE).eval()
    with torch.no_grad():
        assert float(vae.encode(pixels).latent_dist.std.mean()) > 0.5  # untrained head: std ~ 1
    msd.pin_posterior(vae)
    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
        params = dist.parameters
    assert float(dist.std.max()) < 1e-6
    sampled = sample_latents(params, torch.Generator().manual_seed(0), 2.0, 3, slice(0, 3))
    assert torch.allclose(sampled, dist.mean * 2.0, atol=1e-5)
    assert torch.allclose(msd.encode_latents(vae, pixels), dist.mean)  # the means themselves are unchanged


def test_world_tokenizer_reads_world_words_as_single_tokens() -> None:
    scenes = [sample_scene(random.Random(i)) for i in range(20)]
    tokenizer = msd.build_world_tokenizer(msd.caption_words(msd.world_caption_texts(scenes)))
    ids = tokenizer("A red circle is to the left of two blue squares.").input_ids
    assert len(ids) == 2 + 12  # BOS, 11 words and the full stop, EOS
    assert len(tokenizer) < 2000  # not CLIP's 49408


def test_world_tokenizer_is_the_same_in_every_process() -> None:
    """The base stage builds it once per workspace; two builds of the same world once gave some
    words different ids (the trainer's hash-map order), so two cpu runs trained different models
    from the same bytes. Built in two fresh processes, the vocabulary and merges must match."""
    script = (
        "import hashlib, random\n"
        "from backend.miniature.world import sample_scene\n"
        "from training import miniature_sd as msd\n"
        "scenes = [sample_scene(random.Random(i)) for i in range(60)]\n"
        "tok = msd.build_world_tokenizer(msd.caption_words(msd.world_caption_texts(scenes)))\n"
        "print(hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest())\n"
    )
    root = Path(__file__).resolve().parents[1]
    digests = {subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True).stdout.strip() for _ in range(2)}  # fmt: skip
    assert len(digests) == 1, digests


def test_learned_merges_spell_every_word_as_one_token_with_ties_in_string_order() -> None:
    words = {("b", "a</w>"): 2, ("a", "b</w>"): 2, ("c", "a", "b</w>"): 1, ("c", "b</w>"): 3}
    merges = msd.learn_merges(words)
    # ("a", "b</w>") and ("c", "b</w>") both count 3: the smaller pair first; then down to one symbol a word
    assert merges == [("a", "b</w>"), ("c", "b</w>"), ("b", "a</w>"), ("c", "ab</w>")]
    assert msd.learn_merges(dict(reversed(list(words.items())))) == merges
    scenes = [sample_scene(random.Random(i)) for i in range(20)]
    counts = msd.caption_words(msd.world_caption_texts(scenes))
    tokenizer = msd.build_world_tokenizer(counts)
    for word in counts:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word


def test_builders_save_a_pipeline_that_from_pretrained_loads_and_runs(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    scenes = [sample_scene(random.Random(i)) for i in range(20)]
    tokenizer = msd.build_world_tokenizer(msd.caption_words(msd.world_caption_texts(scenes)))
    torch.manual_seed(0)
    vae = msd.build_vae(VAE)
    msd.set_scaling_factor(vae, msd.encode_latents(vae.eval(), msd.images_tensor(scenes)))
    folder = msd.save_pipeline(
        tmp_path / "pipe", vae, msd.build_text_encoder(tokenizer, TEXT), tokenizer, msd.build_unet(UNET)
    )
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "A red circle.", num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.size == (32, 32)
