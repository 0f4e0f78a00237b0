"""On-disk cache of VAE latents, keyed by image content, VAE identity and preprocessing.

Why: the VAE encoder costs a large share of an SD training step at 512 px and its output for a
given image never changes while the VAE is frozen. The cache stores the latent *distribution*
(mean and log-variance, diffusers' ``latent_dist.parameters``), not a sample, so a cached step
draws its latent with the same generator as an uncached one: cached and uncached runs see the
same numbers. Captions stay live — embeddings are never cached (see :mod:`training.t2i.text`).

Layout: ``<workspace>/cache/latents/<vae identity>/<image sha256>_<resolution>_<crop>[_flip].safetensors``,
one small file per image variant, each written atomically (temp file + rename), so a run killed
mid-write leaves no half file and concurrent runs with the same VAE share entries safely.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from backend.workspace import Workspace


@dataclass(frozen=True)
class LatentKey:
    sha256: str
    resolution: int
    crop: str  # "center" (a random crop would change the latent every step: not cacheable)
    flip: bool = False

    @property
    def filename(self) -> str:
        return f"{self.sha256}_{self.resolution}_{self.crop}{'_flip' if self.flip else ''}.safetensors"


class LatentCache:
    """Latent-distribution parameters ``(2 * latent_channels, h, w)`` per :class:`LatentKey`."""

    def __init__(self, root: Path, vae_id: str) -> None:
        self.folder = Path(root) / vae_id
        self.hits = 0
        self.writes = 0

    @classmethod
    def for_workspace(cls, ws: Workspace, vae_id: str) -> LatentCache:
        return cls(ws.home / "cache" / "latents", vae_id)

    def path(self, key: LatentKey) -> Path:
        return self.folder / key.filename

    def has(self, key: LatentKey) -> bool:
        return self.path(key).is_file()

    def get(self, key: LatentKey) -> torch.Tensor | None:
        path = self.path(key)
        try:
            tensor = load_file(path)["params"]
        except (FileNotFoundError, OSError, KeyError, RuntimeError, ValueError):
            return None  # missing, or unreadable (then it is recomputed and overwritten)
        self.hits += 1
        return tensor

    def put(self, key: LatentKey, params: torch.Tensor) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"params": params.detach().to("cpu", torch.float32).contiguous()}, tmp)
        os.replace(tmp, path)
        self.writes += 1


def sample_latents(
    params: torch.Tensor,
    generator: torch.Generator | None,
    scaling_factor: float,
    total: int | None = None,
    rows: slice | None = None,
) -> torch.Tensor:
    """Draw latents from distribution parameters exactly as ``vae.encode(x).latent_dist.sample()``.

    ``params`` may be rows ``rows`` of a batch of ``total`` (one process's slice of the global
    batch): the generator then draws the whole batch's noise and this slice keeps its rows, so each
    example gets the number it gets in a one-process run (see :mod:`training.distributed`).
    """
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from diffusers.utils.torch_utils import randn_tensor

    dist = DiagonalGaussianDistribution(params)
    total = params.shape[0] if total is None else total
    rows = slice(0, total) if rows is None else rows
    eps = randn_tensor(
        (total, *dist.mean.shape[1:]), generator=generator, device=params.device, dtype=params.dtype
    )[rows]
    return (dist.mean + dist.std * eps) * scaling_factor
