"""What each tiny captioner family costs (training.tiny): build, size, load, a training step and a
generate call, and each family's step and generate time as a ratio to tiny BLIP's.

Why a ratio: the tiny models exist so tests and demos exercise every family's real loading and
training path offline; what matters is which families make the suite slow, and absolute
milliseconds on a shared machine say little. BLIP is the reference (the simplest family and the
default captioner); it is measured in the same run whichever families are asked for.

    .venv/bin/python bench/tiny_families.py [--family all|blip|...] [--batch 8] [--new-tokens 16] [--threads 1]

The training step is forward + backward + AdamW on ``--batch`` image/caption pairs; the
generation is greedy and forced to exactly ``--new-tokens`` tokens so families compare on equal
work. Both are the median of a few repetitions after one warm-up. One line per family, then a
JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

from training.tiny import CORPUS, FAMILIES, build_tiny, folder_size  # noqa: E402

REFERENCE = "blip"
_BACKGROUND_RGB = ((250, 250, 250), (215, 215, 215), (240, 228, 200))
_SHAPE_RGB = ((220, 40, 40), (40, 90, 220), (40, 160, 70), (245, 210, 40), (140, 60, 190))


def bench_images(n: int) -> list[Any]:
    """Coloured shapes on plain backgrounds, one per index (no demo data needed)."""
    from PIL import Image, ImageDraw

    images = []
    for i in range(n):
        im = Image.new("RGB", (48, 48), _BACKGROUND_RGB[i % len(_BACKGROUND_RGB)])
        draw = ImageDraw.Draw(im)
        box = (8 + i % 5, 10, 36, 38 - i % 4)
        colour = _SHAPE_RGB[i % len(_SHAPE_RGB)]
        if i % 2:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
        images.append(im)
    return images


def measure(family: str, out_dir: Path, batch_size: int, new_tokens: int) -> dict[str, Any]:
    """Build, load and time one tiny family."""
    import torch

    from training.adapters import load_captioner

    started = time.perf_counter()
    path = build_tiny(family, out_dir)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    adapter = load_captioner(path)
    load_s = time.perf_counter() - started

    images = bench_images(batch_size)
    batch = adapter.prepare_batch(images, [CORPUS[i] for i in range(batch_size)])
    optimizer = torch.optim.AdamW(adapter.model.parameters(), lr=1e-4)
    adapter.model.train()
    step_times = []
    for i in range(6):
        started = time.perf_counter()
        loss = adapter.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:
            step_times.append(time.perf_counter() - started)
    adapter.model.eval()

    gen_times = []
    for i in range(4):
        started = time.perf_counter()
        adapter.generate(adapter.prepare_batch(images), max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        if i:
            gen_times.append(time.perf_counter() - started)
    return {
        "family": family,
        "build_s": round(build_s, 3),
        "size_mb": round(folder_size(path) / 1e6, 3),
        "params_m": round(sum(p.numel() for p in adapter.model.parameters()) / 1e6, 3),
        "load_s": round(load_s, 3),
        "train_step_ms": round(1000 * statistics.median(step_times), 1),
        "generate_ms": round(1000 * statistics.median(gen_times), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="all", choices=(*FAMILIES, "all"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: tiny models gain nothing from more)"
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    families = list(FAMILIES) if args.family == "all" else list(dict.fromkeys([REFERENCE, args.family]))
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny(REFERENCE, Path(tmp) / "warm-up")  # the first build pays transformers' lazy imports
        rows = [measure(f, Path(tmp) / f, args.batch, args.new_tokens) for f in families]
    ref = next(r for r in rows if r["family"] == REFERENCE)
    for r in rows:
        r["train_step_vs_blip"] = round(r["train_step_ms"] / ref["train_step_ms"], 2)
        r["generate_vs_blip"] = round(r["generate_ms"] / ref["generate_ms"], 2)
        print(
            f"{r['family']:11s} build {r['build_s']:6.2f} s  {r['size_mb']:5.2f} MB  {r['params_m']:5.2f} M params  "
            f"load {r['load_s']:5.2f} s  train step {r['train_step_ms']:7.1f} ms ({r['train_step_vs_blip']:5.2f}x BLIP)  "
            f"generate {r['generate_ms']:7.1f} ms ({r['generate_vs_blip']:5.2f}x BLIP)",
            flush=True,
        )
    setup = {
        "batch_size": args.batch,
        "new_tokens": args.new_tokens,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps({**setup, "families": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
