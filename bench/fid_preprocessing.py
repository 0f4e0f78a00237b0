"""FID preprocessing: squashing a non-square reference to 299×299 vs the centre crop (issue 9, 7f).

A synthetic world of shape scenes on a 3:2 canvas (circles stay circles only if the aspect
ratio is kept). References are whole 3:2 scenes, as the photos of a real-image set are. The
"generated" set is what a *perfect* square text-to-image model would make for the same
prompts: the centre square of each reference scene, at 512×512 (paired with its reference, so
there is no sampling noise between the sets). Such a generator deserves an FID near 0: what
is left is the preprocessing (and the resampling between 256 and 512 px). Squashing the
references to 299×299 distorts them and inflates it; the centre-crop protocol keeps it near 0.

Feature extractor: torchvision Inception v3 through ``training.fid.load_inception`` with
*seeded random* weights (He-initialised convolutions; this machine has no pretrained
weights), so the numbers are FIDs in an untrained network's feature space: compare them
with each other, not with published FIDs.

    .venv/bin/python bench/fid_preprocessing.py [--n 100] [--weights FILE]   # prints both protocols
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from training.fid import fid_from_features, load_inception  # noqa: E402

W, H, GEN = 384, 256, 512  # generated at 512 px, as SD 1.x does: the crop is upsampled
COLOURS = [(220, 40, 40), (40, 90, 220), (40, 160, 70), (245, 210, 40), (140, 60, 190), (30, 30, 30)]


def scene(rng: np.random.Generator) -> Image.Image:
    """A 3:2 scene: a vertical colour gradient, 3–6 circles and squares, slightly blurred."""
    top, bottom = rng.integers(120, 256, 3), rng.integers(0, 140, 3)
    ramp = np.linspace(0, 1, H)[:, None, None]
    pixels = (top * (1 - ramp) + bottom * ramp) * np.ones((1, W, 1))
    im = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 7))):
        r = int(rng.integers(14, 48))
        x, y = int(rng.integers(r, W - r)), int(rng.integers(r, H - r))
        colour = COLOURS[int(rng.integers(len(COLOURS)))]
        box = (x - r, y - r, x + r, y + r)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return im.filter(ImageFilter.GaussianBlur(1.0))


def centre_square(im: Image.Image, size: int) -> Image.Image:
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def random_weights(path: Path) -> Path:
    from torchvision.models import inception_v3

    if not path.is_file():
        torch.manual_seed(0)
        model = inception_v3(weights=None, aux_logits=True, init_weights=False)
        for module in model.modules():  # He init keeps activations O(1) through ~90 layers
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        torch.save(model.state_dict(), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="images per set")
    ap.add_argument("--weights", default=str(Path(tempfile.gettempdir()) / f"inception_he_seed0_{os.getuid()}.pth"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    extractor = load_inception(str(random_weights(Path(args.weights))))
    rng = np.random.default_rng(0)
    references = [scene(rng) for _ in range(args.n)]
    generated = [centre_square(im, GEN) for im in references]  # a perfect square generator
    t0 = time.perf_counter()
    f_ref, f_gen = extractor.features(references), extractor.features(generated)
    # the references centre-cropped by hand before the extractor sees them: the target of the fix
    f_ref_cropped = extractor.features([centre_square(im, GEN) for im in references])
    # the protocol before the fix, in the same run: every reference squashed to 299x299 whole
    # (aspect ratio lost); the extractor's centre crop is then a no-op on the square
    f_ref_squashed = extractor.features([im.resize((299, 299), Image.Resampling.BICUBIC) for im in references])
    seconds = time.perf_counter() - t0
    result = {
        "n": args.n,
        "preprocessing": extractor.preprocessing,
        "fid_references_vs_perfect_generator": fid_from_features(f_gen, f_ref).value,
        "fid_hand_cropped_references_vs_perfect_generator": fid_from_features(f_gen, f_ref_cropped).value,
        "fid_squashed_references_vs_perfect_generator": fid_from_features(f_gen, f_ref_squashed).value,
        "fid_references_vs_themselves": fid_from_features(f_ref, f_ref).value,
        "feature_seconds": seconds,
    }
    print(f"preprocessing: {result['preprocessing']}")
    print(
        "FID(perfect square generator, 3:2 references as the extractor prepares them)   "
        f"{result['fid_references_vs_perfect_generator']:.5f}"
    )
    print(
        "FID(perfect square generator, references centre-cropped by hand first)        "
        f"{result['fid_hand_cropped_references_vs_perfect_generator']:.5f}"
    )
    print(
        "FID(perfect square generator, references squashed to 299x299: the old protocol) "
        f"{result['fid_squashed_references_vs_perfect_generator']:.5f}"
    )
    print(f"(feature scale: FID units of a seeded random network; {seconds:.0f} s for the features)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
