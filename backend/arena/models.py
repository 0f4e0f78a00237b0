"""Arena tables (migration 0005): campaigns, their systems and items, pairs, tickets and judgments.

Why these shapes:

* A **pair** is two :class:`EvalImage` items shown for one prompt (t2i) or one image (captions);
  the sides are *not* part of the pair: each ticket draws them at random and the judgment
  records which item was shown left, so left-side bias can be measured and corrected.
* A **ticket** is the server's promise "annotator X judges pair P under criterion C with this
  left/right order". Its random token is all the browser ever sees, so nothing in the page can
  reveal a system. At most one ticket per annotator and campaign is open (partial unique
  index), so a reload returns the same ticket instead of reshuffling.
* A **judgment** is unique per (pair, annotator, criterion, is_repeat) and per ticket, so a
  double submit or a race between two requests can never store two votes; the planned
  swapped-order repeat is the only second look an annotator gets at a pair.
* ``campaign_id`` is repeated on tickets and judgments (and the two systems on pairs) so the
  scheduler's load queries need no joins while 20 annotators wait on the write lock.
* A **verdict** campaign (kind ``verdict``, :mod:`.verdicts`) judges one image at a time against
  its prompt (faithful: ``yes``/``no``). Its "pair" is one item shown alone (``a_id == b_id``), so
  tickets, load balancing, repeats, reveals and closing are the pairwise arena's own code, and
  the blindness guarantee holds by the same rules. ``EvalImage.elements`` (migration 0008) lists
  the prompt's required elements an annotator may tick as missing; they go into the judgment's
  ``flags`` as ``{"missing": [...]}``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from backend.models import utcnow


class CampaignKind(StrEnum):
    t2i = "t2i"
    caption = "caption"
    verdict = "verdict"  # absolute verdicts: one image and its prompt, faithful or not


class CampaignStatus(StrEnum):
    open = "open"
    closed = "closed"


class Choice(StrEnum):
    left = "left"
    right = "right"
    tie = "tie"
    both_bad = "both_bad"


class Verdict(StrEnum):
    """The answers of a verdict campaign: is the image faithful to its prompt?"""

    yes = "yes"
    no = "no"


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    kind: str = Field(default=CampaignKind.t2i.value)
    criteria: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    target_per_pair: int = Field(default=3)  # votes wanted per pair and criterion
    repeat_share: float = Field(default=0.1)  # share of an annotator's votes asked again, sides swapped
    gold_share: float = Field(default=0.0)  # share of an annotator's votes on gold pairs
    status: str = Field(default=CampaignStatus.open.value)
    source: str = Field(default="")  # "generated" | "folders" | "captions" | "import"
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # datasets, files, seed
    created_by: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)


class ArenaSystem(SQLModel, table=True):
    """One contestant: a T2I checkpoint (and prompt regime), an imported folder or a caption kind."""

    __table_args__ = (UniqueConstraint("campaign_id", "name", name="uq_arenasystem_campaign_name"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True, ondelete="CASCADE")
    name: str
    artifact_id: int | None = Field(default=None, foreign_key="artifact.id", ondelete="SET NULL")
    # caption mix, usage, captioners, caption_condition, source, checkpoint, regime, ...
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class EvalImage(SQLModel, table=True):
    """One item a system produced: an image for a prompt (t2i) or a caption of an image.

    ``image_id`` is empty only for items that came from an imported vote table. It has no
    ON DELETE action on purpose: deleting a dataset whose images carry votes is refused.
    """

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True, ondelete="CASCADE")
    system_id: int = Field(foreign_key="arenasystem.id", index=True, ondelete="CASCADE")
    image_id: int | None = Field(default=None, foreign_key="image.id", index=True)
    caption_id: int | None = Field(default=None, foreign_key="caption.id")
    prompt: str = Field(default="")
    category: str | None = None
    seed: int | None = None
    # verdict campaigns: the prompt's required elements, offered as "missing" ticks (migration 0008)
    elements: list[str] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))


class EvalPair(SQLModel, table=True):
    """Two items to compare. ``gold_answer`` ("a"|"b") is the known winner of a gold pair."""

    __table_args__ = (Index("ix_evalpair_campaign_gold", "campaign_id", "is_gold"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", ondelete="CASCADE")
    a_id: int = Field(foreign_key="evalimage.id", ondelete="CASCADE")
    b_id: int = Field(foreign_key="evalimage.id", ondelete="CASCADE")
    a_system_id: int = Field(foreign_key="arenasystem.id", ondelete="CASCADE")
    b_system_id: int = Field(foreign_key="arenasystem.id", ondelete="CASCADE")
    image_id: int | None = Field(default=None, foreign_key="image.id")  # the judged image (caption arena)
    prompt: str = Field(default="")
    category: str | None = None
    seed: int | None = None
    is_gold: bool = Field(default=False)
    gold_answer: str | None = None


class ArenaTicket(SQLModel, table=True):
    __table_args__ = (
        # at most one open ticket per annotator and campaign: a reload returns it, never a second one
        Index(
            "uq_arenaticket_open",
            "campaign_id",
            "annotator_id",
            unique=True,
            sqlite_where=text("used = 0 AND skipped = 0"),
            postgresql_where=text("NOT used AND NOT skipped"),
        ),
        Index("ix_arenaticket_campaign_pair", "campaign_id", "pair_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(unique=True)  # opaque and random: the only handle the browser gets
    campaign_id: int = Field(foreign_key="campaign.id", ondelete="CASCADE")
    pair_id: int = Field(foreign_key="evalpair.id", ondelete="CASCADE")
    annotator_id: int = Field(foreign_key="user.id", index=True)
    criterion: str
    left_id: int = Field(foreign_key="evalimage.id", ondelete="CASCADE")
    right_id: int = Field(foreign_key="evalimage.id", ondelete="CASCADE")
    is_repeat: bool = Field(default=False)
    issued_at: datetime = Field(default_factory=utcnow)
    used: bool = Field(default=False)
    skipped: bool = Field(default=False)


class Judgment(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint(
            "pair_id", "annotator_id", "criterion", "is_repeat", name="uq_judgment_pair_annotator_criterion"
        ),
        Index("ix_judgment_campaign_criterion", "campaign_id", "criterion"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", ondelete="CASCADE")
    pair_id: int = Field(foreign_key="evalpair.id", ondelete="CASCADE")
    ticket_id: int | None = Field(
        default=None, foreign_key="arenaticket.id", unique=True, ondelete="SET NULL"
    )
    annotator_id: int = Field(foreign_key="user.id", index=True)
    criterion: str
    left_image_id: int = Field(foreign_key="evalimage.id", ondelete="CASCADE")  # the item shown left
    choice: str  # left | right | tie | both_bad; verdict campaigns: yes | no
    elapsed_ms: int | None = None  # measured by the client: ticket shown -> vote clicked
    server_ms: float | None = None  # time spent in submit_vote, DB write included (not the commit)
    is_repeat: bool = Field(default=False)
    flags: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # hallucination/omission
    source: str = Field(default="studio")  # studio | import
    created_at: datetime = Field(default_factory=utcnow)


class ArenaReveal(SQLModel, table=True):
    """An annotator was shown which systems they judged in a campaign (migration 0006).

    From then on they are no longer blind there: :mod:`.scheduling` hands them no further pair
    and takes no vote of theirs in that campaign. A reveal is only given when nothing can follow
    anyway (their work is done, they ended it, or the campaign is closed), see :mod:`.reveals`.
    """

    __table_args__ = (
        UniqueConstraint("campaign_id", "annotator_id", name="uq_arenareveal_campaign_annotator"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", ondelete="CASCADE")
    annotator_id: int = Field(foreign_key="user.id")
    reason: str  # finished | ended | closed
    revealed_at: datetime = Field(default_factory=utcnow)
