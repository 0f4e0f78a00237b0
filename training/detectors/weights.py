"""Where a checkpoint's files are, and one hash that names its weights (for provenance).

Why a hash: a detector or text encoder named by a folder or hub id can change under the same
name (a re-download, a fine-tune saved over it); a result must say which weights produced it.
Shared by the detectors and the transformers CLIP scorer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


class WeightsNotFound(FileNotFoundError):
    """A model reference that is neither a folder nor a hub id in the local cache (no download here)."""


def checkpoint_folder(ref: str) -> Path:
    """The folder holding ``ref``'s files: the folder itself, or the hub id's local snapshot."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - several "not cached" / "bad id" exception types
        raise WeightsNotFound(
            f"{ref!r} is neither a folder nor a hub id in the local Hugging Face cache (this machine "
            "cannot download: copy the checkpoint folder here and pass its path)"
        ) from exc


def weights_sha256(folder: Path) -> str:
    """sha256 of the weights: the file's own hash for a single-file checkpoint (comparable with the
    hub's LFS hash), else the hash of the sorted "name sha256" lines of every shard. Safetensors
    files are preferred when a folder holds both formats (what ``from_pretrained`` loads)."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    chosen = [p for p in files if p.suffix == ".safetensors"] or files
    if not chosen:
        raise WeightsNotFound(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {folder}")
    digests = []
    for p in chosen:
        h = hashlib.sha256()
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digests.append((p.name, h.hexdigest()))
    if len(digests) == 1:
        return digests[0][1]
    return hashlib.sha256("".join(f"{n} {d}\n" for n, d in digests).encode()).hexdigest()
