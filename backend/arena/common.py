"""Errors and lookups shared by the arena modules."""

from __future__ import annotations

from sqlmodel import Session, select

from backend.arena.models import ArenaSystem, Campaign

MAX_LISTED_ERRORS = 20


class ArenaError(ValueError):
    """Bad input for an arena operation; the message says what was wrong and what to do."""


class CampaignNotFound(ArenaError, LookupError):
    pass


class CampaignClosedForGood(ArenaError):
    """A closed campaign was asked to reopen: closing unblinded it, so it stays closed."""


class TicketError(ArenaError):
    """A vote or skip on a ticket that does not exist, is not the caller's, or was skipped."""


class RowErrors(ArenaError):
    """Rows of an input file were refused; ``errors`` holds one "line N: why" per bad row."""

    def __init__(self, what: str, errors: list[str]) -> None:
        self.errors = errors
        shown = "; ".join(errors[:MAX_LISTED_ERRORS])
        more = f"; ... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        super().__init__(f"{what}: {len(errors)} bad row(s), nothing was written: {shown}{more}")


CampaignRef = str | int


def find_campaign(session: Session, ref: CampaignRef) -> Campaign:
    """The campaign named ``ref`` (or with id ``ref`` when it is an int)."""
    if isinstance(ref, int):
        campaign = session.get(Campaign, ref)
    else:
        campaign = session.exec(select(Campaign).where(Campaign.name == ref.strip())).first()
    if campaign is None:
        raise CampaignNotFound(f"no arena campaign {ref!r}; list them with `recap-studio arena list`")
    return campaign


def system_names(session: Session, campaign_id: int) -> dict[int, str]:
    return {
        s.id: s.name
        for s in session.exec(select(ArenaSystem).where(ArenaSystem.campaign_id == campaign_id))
        if s.id is not None
    }


CLUSTER = "cluster"  # the vote column the intervals resample: the prompt (or the pair without one)
