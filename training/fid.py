"""FID and KID of generated images against real ones, with a declared, local feature extractor.

Why our own module (and not torchmetrics / clean-fid): both fetch Inception weights from the
internet on first use, which this machine cannot do and which would hide *which* network
produced a number. Here the extractor is named in the config and its weights are a file on
this machine, and every number is stored with the extractor, the weights and the
preprocessing that produced it.

Extractors
* ``inception``: torchvision's ``inception_v3`` (IMAGENET1K_V1 weights, file
  ``inception_v3_google-0cc3c7bd.pth``), 2048-d pool features (the layer before ``fc``).
  Preprocessing, the same for reference and generated images: RGB; centre crop to a square
  (the largest one, side = the shorter side); resize to 299×299 as clean-fid's "clean" mode
  does (PIL bicubic, anti-aliased, on each channel in float, no rounding back to 8 bits);
  scaled to [-1, 1], the input range Google's Inception weights were trained with. Why the
  crop: squashing a 4:3 photo to a square distorts every shape in the reference set, while a
  square generator's images are not distorted, so FID would partly measure the aspect ratio
  of the reference set. The T2I evaluations that use clean-fid (COCO-30K as in GigaGAN, SD)
  centre-crop the references the same way; clean-fid itself leaves cropping to the caller. The weights are loaded only from ``extractor_weights`` or torchvision's cache file;
  when neither exists the run fails at once saying where to put the file.
  Caveat (stored with every number): published FIDs use the TensorFlow Inception graph
  (pytorch-fid / clean-fid ``pt_inception-2015-12-05``); torchvision's weights give
  numbers of the same kind but not identical, so compare FIDs within this studio only.
* ``clip``: the open_clip image embedding of ``clip_model`` / ``clip_pretrained``,
  L2-normalised, with open_clip's own preprocessing: a Fréchet distance in CLIP space
  (FD_CLIP, Kynkäänniemi et al. 2023), not Inception FID.

Maths
* FID = ‖μ₁-μ₂‖² + tr(Σ₁ + Σ₂ - 2(Σ₁Σ₂)^½), with ``scipy.linalg.sqrtm``. As clean-fid and
  pytorch-fid do: if the square root is not finite, ``eps`` is added to both diagonals and it
  is retried; tiny imaginary parts (numerical noise) are dropped, large ones are an error.
  When there are fewer images than feature dimensions (always, in tests; often with CLIP),
  both covariances live in the span of the centred samples, so the computation is done
  exactly in that subspace (an orthonormal basis from a QR decomposition): same number,
  a k×k instead of a d×d square root.
* KID = the unbiased estimator of MMD² with the cubic polynomial kernel
  k(x, y) = (xᵀy / d + 1)³, averaged over ``num_subsets`` random subsets of ``subset_size``
  images of each set (drawn without replacement, seeded); its mean and standard deviation
  over subsets are reported, as by clean-fid and torchmetrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from scipy import linalg

EXTRACTORS = ("inception", "clip")
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
INCEPTION_URL = f"https://download.pytorch.org/models/{INCEPTION_FILE}"
INCEPTION_SIZE = 299
KID_SUBSETS = 100
KID_SEED = 0
IMAG_TOLERANCE = 1e-3  # clean-fid's bound on the imaginary part of diag((Σ₁Σ₂)^½)


class ExtractorWeightsMissing(RuntimeError):
    """The feature extractor's weights are not on this machine; the message says where to put them."""


class MetricError(ValueError):
    """A metric that cannot be computed from the given features (too few images, bad numbers)."""


# --------------------------------------------------------------------------- extractors


@dataclass
class FeatureExtractor:
    """A loaded feature extractor and everything a stored number must say about it."""

    name: str  # "inception" | "clip"
    model: str  # what EvalResult.model shows
    weights: str  # what EvalResult.weights shows
    dim: int
    preprocessing: str
    note: str
    encode: Callable[[Sequence[PILImage.Image]], np.ndarray] = field(repr=False)

    def features(self, images: Sequence[PILImage.Image]) -> np.ndarray:
        """Features of ``images`` as a float64 array of shape (n, dim)."""
        if not images:
            return np.zeros((0, self.dim))
        return np.asarray(self.encode(images), dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {
            "extractor": self.name,
            "model": self.model,
            "weights": self.weights,
            "feature_dim": self.dim,
            "preprocessing": self.preprocessing,
            "note": self.note,
        }


def default_inception_path() -> Path:
    """Where torchvision caches the Inception weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_weights_path(weights: str = "") -> Path:
    """The Inception weights file to load: ``weights`` if given, else torchvision's cache file."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ExtractorWeightsMissing(
                f"extractor_weights {weights!r} is not a file. Pass the path of torchvision's "
                f"Inception v3 weights ({INCEPTION_FILE}, downloadable from {INCEPTION_URL})"
            )
        return path
    path = default_inception_path()
    if not path.is_file():
        raise ExtractorWeightsMissing(
            f"FID/KID with extractor 'inception' need torchvision's Inception v3 weights, and this "
            f"machine cannot download them. Either (a) on a machine with internet download {INCEPTION_URL} "
            f"and put the file at {path} (TORCH_HOME moves that folder), or (b) put it anywhere and pass "
            f"extractor_weights=/path/to/{INCEPTION_FILE}, or (c) use extractor=clip (a Fréchet distance "
            "in CLIP space with the CLIP model you score with)"
        )
    return path


def centre_square(image: PILImage.Image) -> PILImage.Image:
    """The largest centred square of ``image`` (offsets rounded down, as ``(w - side) // 2``)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def clean_resize(image: PILImage.Image, size: int = INCEPTION_SIZE) -> np.ndarray:
    """clean-fid's "clean" resize: each RGB channel as a float image (PIL mode "F"), PIL
    bicubic to ``size``×``size``, clipped to [0, 255], not rounded: (size, size, 3) float32."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    channels = [
        np.asarray(
            PILImage.fromarray(rgb[:, :, c], mode="F").resize((size, size), PILImage.Resampling.BICUBIC)
        ).clip(0, 255)
        for c in range(3)
    ]
    return np.stack(channels, axis=2).astype(np.float32)


def inception_pixels(images: Sequence[PILImage.Image]) -> torch.Tensor:
    """RGB, centre square, clean-fid resize to 299×299, scaled to [-1, 1]: (n, 3, 299, 299) float."""
    arrays = [clean_resize(centre_square(im.convert("RGB"))) for im in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return pixels / 127.5 - 1.0


def load_inception(weights: str = "", device: str = "cpu") -> FeatureExtractor:
    """torchvision Inception v3 from a local state dict, returning 2048-d pool features."""
    from torchvision.models import inception_v3

    path = inception_weights_path(weights)
    # init_weights=False: the random init (scipy truncated normal) is slow and overwritten anyway
    model = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ExtractorWeightsMissing(
            f"{path} is not a torchvision Inception v3 state dict ({INCEPTION_FILE}): {exc}"
        ) from None
    model.fc = torch.nn.Identity()  # pool features, not class logits
    model.to(device).eval()

    @torch.inference_mode()
    def encode(images: Sequence[PILImage.Image]) -> np.ndarray:
        return model(inception_pixels(images).to(device)).float().cpu().numpy()

    return FeatureExtractor(
        name="inception",
        model="inception_v3 (torchvision)",
        weights=str(path),
        dim=2048,
        preprocessing=(
            "RGB; centre crop to a square (side = shorter side); PIL bicubic resize to 299x299 per channel "
            "in float, not rounded (clean-fid 'clean' mode); scaled to [-1, 1]; pool3 features (2048-d, "
            "before fc); the same for reference and generated images"
        ),
        note=(
            "torchvision IMAGENET1K_V1 Inception weights: comparable within this studio, not identical "
            "to published FIDs computed with the TF Inception graph (pytorch-fid / clean-fid)"
        ),
        encode=encode,
    )


def clip_extractor(scorer: Any) -> FeatureExtractor:
    """The image tower of a loaded :class:`training.clip.ClipScorer` as a feature extractor."""

    def encode(images: Sequence[PILImage.Image]) -> np.ndarray:
        return scorer.image_features(images).cpu().numpy()

    dim = int(getattr(scorer.model, "embed_dim", 0) or encode([PILImage.new("RGB", (8, 8))]).shape[1])
    steps = "; ".join(type(t).__name__ + _args(t) for t in getattr(scorer.preprocess, "transforms", []))
    return FeatureExtractor(
        name="clip",
        model=f"clip:{scorer.model_name}",
        weights=str(scorer.pretrained),
        dim=dim,
        preprocessing=f"open_clip preprocessing of {scorer.model_name} ({steps}); L2-normalised embedding",
        note="Fréchet distance in CLIP embedding space (FD_CLIP), not Inception FID",
        encode=encode,
    )


def _args(transform: Any) -> str:
    for attr in ("size", "interpolation", "mean"):
        if hasattr(transform, attr):
            return f"({attr}={getattr(transform, attr)})"
    return ""


# --------------------------------------------------------------------------- FID


@dataclass(frozen=True)
class FidResult:
    value: float
    n1: int
    n2: int
    dims: int  # dimensions the covariance square root was taken in (subspace when n < d)
    eps_added: float  # 0 unless the square root needed the diagonal offset


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, n-1) covariance of the rows."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise MetricError(f"need at least 2 feature vectors for a covariance, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> tuple[float, float]:
    """(Fréchet distance of two Gaussians, eps added to the diagonals or 0)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise MetricError(f"feature shapes differ: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    added = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "matrix is singular": handled below as clean-fid does
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
            added = eps
    if np.iscomplexobj(covmean):
        imaginary = np.max(np.abs(np.diagonal(covmean).imag))
        if imaginary > IMAG_TOLERANCE:
            raise MetricError(f"covariance square root has an imaginary component of {imaginary:.3g}")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
    return value, added


def fid_from_features(features1: np.ndarray, features2: np.ndarray, eps: float = 1e-6) -> FidResult:
    """FID between two feature sets; exact in the samples' subspace when n1 + n2 < d."""
    f1, f2 = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise MetricError(f"feature arrays must be (n, d) with the same d, got {f1.shape} and {f2.shape}")
    for name, f in (("generated", f1), ("reference", f2)):
        if f.shape[0] < 2:
            raise MetricError(f"FID needs at least 2 {name} images, got {f.shape[0]}")
        if not np.isfinite(f).all():
            raise MetricError(f"{name} features contain NaN or infinite values")
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    c1, c2 = f1 - mu1, f2 - mu2
    dims = f1.shape[1]
    if f1.shape[0] + f2.shape[0] < dims:
        # both covariances are sums of outer products of centred rows: their column spaces lie in
        # span(c1, c2), so projecting onto an orthonormal basis of it keeps every trace term exact
        basis, _ = np.linalg.qr(np.concatenate([c1, c2]).T)
        c1, c2 = c1 @ basis, c2 @ basis
        dims = basis.shape[1]
    sigma1 = c1.T @ c1 / (f1.shape[0] - 1)
    sigma2 = c2.T @ c2 / (f2.shape[0] - 1)
    diff = mu1 - mu2
    value, added = frechet_distance(np.zeros(dims), sigma1, np.zeros(dims), sigma2, eps)
    return FidResult(float(value + diff @ diff), f1.shape[0], f2.shape[0], dims, added)


# --------------------------------------------------------------------------- KID


@dataclass(frozen=True)
class KidResult:
    mean: float
    std: float
    subset_size: int
    num_subsets: int
    n1: int
    n2: int


def polynomial_mmd_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD² of two equal-size samples with k(a, b) = (aᵀb / d + coef0)^degree."""
    m, d = x.shape
    if m < 2 or y.shape[0] != m:
        raise MetricError(f"need two samples of the same size ≥ 2, got {x.shape[0]} and {y.shape[0]}")
    kxx = (x @ x.T / d + coef0) ** degree
    kyy = (y @ y.T / d + coef0) ** degree
    kxy = (x @ y.T / d + coef0) ** degree
    off = m * (m - 1)
    return float(
        (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.sum() / (m * m)
    )


def kid_from_features(
    features1: np.ndarray,
    features2: np.ndarray,
    subset_size: int = 1000,
    num_subsets: int = KID_SUBSETS,
    seed: int = KID_SEED,
) -> KidResult:
    """KID: mean and std of the unbiased polynomial MMD² over random subsets (size capped at both n)."""
    f1, f2 = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise MetricError(f"feature arrays must be (n, d) with the same d, got {f1.shape} and {f2.shape}")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise MetricError(
            f"KID needs at least 2 images on each side, got {f1.shape[0]} generated and {f2.shape[0]} reference"
        )
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            polynomial_mmd_unbiased(
                f1[rng.choice(f1.shape[0], m, replace=False)], f2[rng.choice(f2.shape[0], m, replace=False)]
            )
            for _ in range(num_subsets)
        ]
    )
    return KidResult(float(values.mean()), float(values.std()), m, num_subsets, f1.shape[0], f2.shape[0])
