"""The one writer every source feeds: validate, dedupe, then insert atomically in batches.

Why this shape:

* **Validation before any insert.** Image bytes are hashed and decoded (and caption text
  was decoded by the source) before a row exists, so a bad item never leaves a partial
  row behind; it only adds a line to the report.
* **Short write locks.** The file and its thumbnail are stored (content-addressed,
  idempotent) *before* the write transaction starts, so SQLite's single write lock is
  held only for plain inserts, and annotators working beside an import never wait long.
  A kill between storing and committing leaves an unreferenced file under ``images/``,
  never a row without its file.
* **Batches with a savepoint per item.** One transaction per batch keeps a 100k-item
  import fast; each item (image row + its caption rows) sits in its own SAVEPOINT, so an
  item that fails at insert time rolls back alone. A kill loses at most the current
  batch and never leaves an image without its caption.
* **Dedupe without decoding.** Items are hashed first; a hash already in the dataset (asked
  for once per batch) is counted as a duplicate without decoding it again. Files are also
  remembered by (device, inode, size, mtime), so a table that names the same file in many
  rows reads and hashes it once per import.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from backend.captions import add_caption
from backend.db import read_session, write_session
from backend.images import DEFAULT_MAX_PIXELS, BadImage, DecodedImage, add_image, decode_image
from backend.ingest.files import Fingerprint, fingerprint, open_regular, read_fd
from backend.ingest.items import Item, ItemError
from backend.ingest.report import ImportReport, NotUtf8Text
from backend.models import CaptionKind, Image
from backend.progress import ProgressFn, no_progress
from backend.storage import sha256_bytes, store_image
from backend.workspace import Workspace

BATCH_ITEMS = 64
BATCH_BYTES = 64 << 20  # flush early when a batch of big images would hold this much
CACHE_LIMIT = 200_000  # entries per in-memory cache; correctness never depends on a cache hit
PROGRESS_EVERY = 256  # items between progress calls when nothing needs writing
_IN_CHUNK = 500  # hashes per "which of these exist" query (well under SQLite's variable limit)


@dataclass
class _Loaded:
    item: Item
    sha256: str
    data: bytes
    fp: Fingerprint | None


@dataclass
class _Ready:
    loaded: _Loaded
    decoded: DecodedImage


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()  # bounded memory for million-item imports; a miss only costs a lookup
    cache[key] = value


class ItemWriter:
    """Writes the items of one import into one dataset and keeps the report's counts."""

    def __init__(
        self,
        ws: Workspace,
        dataset_id: int,
        report: ImportReport,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        batch_items: int = BATCH_ITEMS,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.ws = ws
        self.dataset_id = dataset_id
        self.report = report
        self.max_pixels = max_pixels
        self.batch_items = batch_items
        self.batch_bytes = batch_bytes
        self._in_dataset: dict[str, None] = {}  # hashes committed in this dataset
        self._bad: dict[str, str] = {}  # hash -> why those bytes were refused
        self._by_fp: dict[Fingerprint, str] = {}  # file version -> hash

    # -- driving ---------------------------------------------------------------------
    def write_all(
        self, items: Iterable[Item], total: int | None, progress: ProgressFn | None, message: str
    ) -> None:
        progress = progress or no_progress
        progress(0, total, message)
        batch: list[_Loaded] = []
        nbytes = 0
        done = 0
        stream = iter(items)
        while True:
            try:
                item = next(stream)
            except StopIteration:
                break
            except Exception:
                # A source must turn bad input into Item.error; should one still raise, the
                # items it already yielded (and that passed validation) are kept, not lost
                # with the batch. KeyboardInterrupt is not caught: a kill stays a kill.
                self._flush(batch)
                raise
            loaded = self._load(item)
            done += 1
            if loaded is not None:
                batch.append(loaded)
                nbytes += len(loaded.data)
            if len(batch) >= self.batch_items or nbytes >= self.batch_bytes:
                self._flush(batch)
                batch, nbytes = [], 0
                progress(done, total, message)
            elif done % PROGRESS_EVERY == 0:
                progress(done, total, message)
        self._flush(batch)
        progress(done, done, message)  # a line-count estimate may have been high

    # -- stage 1: bytes and hash -----------------------------------------------------
    def _load(self, item: Item) -> _Loaded | None:
        if item.error is not None:
            self.report.skip(item.label, item.error)
            return None
        fp: Fingerprint | None = None
        try:
            if item.data is not None:
                data = item.data
            elif item.path is not None:
                fd, st = open_regular(item.path, item.key)
                try:
                    fp = fingerprint(st)
                    known = self._by_fp.get(fp)
                    if known is not None and self._settled(item, known):
                        return None
                    data = read_fd(fd, st, item.key)
                finally:
                    os.close(fd)
            else:
                raise ItemError("no image in this item")
        except ItemError as exc:
            self.report.skip(item.label, exc.reason)
            return None
        sha = sha256_bytes(data)
        if fp is not None:
            _remember(self._by_fp, fp, sha)
        if self._settled(item, sha):
            return None
        return _Loaded(item=item, sha256=sha, data=data, fp=fp)

    def _settled(self, item: Item, sha: str) -> bool:
        """Bytes seen before in this import or dataset: a duplicate, or the same refusal."""
        if sha in self._in_dataset:
            self.report.duplicates += 1
            return True
        reason = self._bad.get(sha)
        if reason is not None:
            self.report.skip(item.label, reason)
            return True
        return False

    # -- stage 2: dedupe against the dataset, decode, store the file ------------------
    def _flush(self, batch: list[_Loaded]) -> None:
        if not batch:
            return
        self._mark_existing({b.sha256 for b in batch if b.sha256 not in self._in_dataset})
        ready: list[_Ready] = []
        decoded: dict[str, DecodedImage] = {}
        for loaded in batch:
            if self._settled(loaded.item, loaded.sha256):
                continue
            image = decoded.get(loaded.sha256)
            if image is None:
                try:
                    image = self._decode_and_store(loaded.data)
                except ItemError as exc:
                    _remember(self._bad, loaded.sha256, exc.reason)
                    self.report.skip(loaded.item.label, exc.reason)
                    continue
                decoded[loaded.sha256] = image
            ready.append(_Ready(loaded=loaded, decoded=image))
        if ready:
            self._insert(ready)

    def _mark_existing(self, hashes: set[str]) -> None:
        pending = sorted(hashes)
        if not pending:
            return
        with read_session(self.ws) as session:
            for start in range(0, len(pending), _IN_CHUNK):
                chunk = pending[start : start + _IN_CHUNK]
                query = select(Image.sha256).where(
                    Image.dataset_id == self.dataset_id, Image.sha256.in_(chunk)
                )
                for sha in session.exec(query):
                    _remember(self._in_dataset, sha, None)

    def _decode_and_store(self, data: bytes) -> DecodedImage:
        try:
            image = decode_image(data, self.max_pixels)
        except BadImage as exc:
            raise ItemError(str(exc)) from None
        try:
            # store_image is what add_image calls; doing it here keeps the write lock short,
            # and add_image's own call then finds both files present and does nothing.
            store_image(self.ws, image.data, image.sha256, image.ext, image.pil)
        except OSError as exc:
            if exc.errno is not None:
                raise  # disk full, permissions: the workspace is at fault, not the item
            raise ItemError(f"cannot make a thumbnail: {exc}") from None
        except ValueError as exc:
            raise ItemError(f"cannot make a thumbnail: {exc}") from None
        finally:
            image.pil.close()  # free the pixels now; only bytes and header facts are needed
        return image

    # -- stage 3: one transaction per batch, one savepoint per item --------------------
    def _insert(self, ready: list[_Ready]) -> None:
        outcomes: list[tuple[_Ready, bool | None, str]] = []
        with write_session(self.ws) as session:
            for entry in ready:
                item = entry.loaded.item
                try:
                    with session.begin_nested():
                        image, created = add_image(
                            session, self.ws, self.dataset_id, entry.decoded, item.key, item.meta
                        )
                        if created and item.caption and image.id is not None:
                            add_caption(
                                session,
                                image.id,
                                CaptionKind.alttext.value,
                                item.caption,
                                source=item.caption_source,
                                provenance=item.caption_provenance,
                            )
                except (SQLAlchemyError, ValueError, OSError) as exc:
                    outcomes.append((entry, None, f"could not be saved: {exc}"))
                    continue
                outcomes.append((entry, created, ""))
        # counted only after the commit, so the report never claims rows a crash lost
        for entry, created, error in outcomes:
            if created is None:
                self.report.skip(entry.loaded.item.label, error)
                continue
            if created:
                self.report.imported += 1
                item = entry.loaded.item
                self.report.not_utf8.extend(NotUtf8Text(item.label, what, enc) for what, enc in item.not_utf8)
            else:
                self.report.duplicates += 1
            _remember(self._in_dataset, entry.loaded.sha256, None)
