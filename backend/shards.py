"""Images registered *by reference*: they stay inside their WebDataset / Parquet shards.

Why: a corpus of millions of images (RECAP's 10M, Recap-DataComp's 1.3B) does not fit in a
workspace, and copying it first would double its storage for nothing. ``recap-studio import
SHARDS --by-reference`` records each shard (:class:`Shard`: where it is, its size and SHA-256)
and, per image, an ordinary :class:`~backend.models.Image` row (hash, size, dimensions, key:
everything captions, runs and Review need) plus a :class:`ShardMember` row saying where its
bytes are: the data offset of its tar member, or its row in the Parquet file.

Why a table of its own rather than columns on ``image``: images imported the ordinary way
have no location row at all, so nothing about them changes, and the ``image`` table (the one
every page reads) is not altered. Readers ask :func:`member_refs` for the images they need
(one query per page or batch) and read the bytes with :func:`backend.storage.read_members`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import BigInteger, Column, UniqueConstraint, func
from sqlmodel import Field, Session, SQLModel, col, select

from backend.db import read_session
from backend.models import Image, utcnow
from backend.storage import MemberRef
from backend.workspace import Workspace

#: shard formats a reference can point into (uncompressed tar: a member is read by offset)
SHARD_FORMATS = ("webdataset", "parquet")
_IN_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit


class Shard(SQLModel, table=True):
    """One shard file of a dataset registered by reference."""

    __table_args__ = (UniqueConstraint("dataset_id", "uri", name="uq_shard_dataset_uri"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True, ondelete="CASCADE")
    uri: str  # an absolute path, or a pyarrow filesystem URI (s3://bucket/shard-0001.tar)
    format: str  # one of SHARD_FORMATS
    image_column: str | None = None  # Parquet: the column that holds the image bytes
    nbytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str  # of the whole file when it was registered: a changed shard is detected
    members: int = Field(default=0)  # images registered from it (duplicates excluded)
    created_at: datetime = Field(default_factory=utcnow)


class ShardMember(SQLModel, table=True):
    """Where the bytes of one image registered by reference are."""

    image_id: int = Field(primary_key=True, foreign_key="image.id", ondelete="CASCADE")
    shard_id: int = Field(foreign_key="shard.id", index=True, ondelete="CASCADE")
    # tar: byte offset of the member's data (its size is Image.nbytes); Parquet: row index in the file
    offset: int = Field(sa_column=Column(BigInteger, nullable=False))


def member_refs(session: Session, image_ids: Iterable[int]) -> dict[int, MemberRef]:
    """{image id: where its bytes are} for those of ``image_ids`` registered by reference."""
    ids = sorted(set(image_ids))
    found: dict[int, MemberRef] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        rows = session.exec(
            select(
                ShardMember.image_id,
                ShardMember.offset,
                Shard.uri,
                Shard.format,
                Shard.image_column,
                Image.nbytes,
                Image.sha256,
            )  # fmt: skip
            .join(Shard, col(Shard.id) == col(ShardMember.shard_id))
            .join(Image, col(Image.id) == col(ShardMember.image_id))
            .where(col(ShardMember.image_id).in_(ids[start : start + _IN_CHUNK]))
        ).all()
        for image_id, offset, uri, fmt, column, nbytes, sha in rows:
            found[int(image_id)] = MemberRef(uri, fmt, int(offset), int(nbytes), column, sha)
    return found


def by_reference_count(ws: Workspace, dataset_id: int) -> int:
    """How many images of a dataset live in shards rather than in the workspace."""
    with read_session(ws) as s:
        return int(
            s.exec(
                select(func.count())
                .select_from(ShardMember)
                .join(Image, col(Image.id) == col(ShardMember.image_id))
                .where(Image.dataset_id == dataset_id)
            ).one()
        )


def dataset_shards(ws: Workspace, dataset_id: int) -> list[Shard]:
    with read_session(ws) as s:
        return list(s.exec(select(Shard).where(Shard.dataset_id == dataset_id).order_by(col(Shard.id))).all())
