"""Annotation sets: choosing the images, handing them out, drafts, submit, review, progress.

The RECAP workflow starts with a *small* human caption set (about a hundred images), each
image captioned twice (short + long). This package is the workflow around that set, one
module per concern:

* :mod:`.sampling` — :func:`create_annotation_set` (in :mod:`.sets`) picks the images of a
  dataset, ``random`` (seeded) or ``stratified`` (spread over strata, see :func:`stratum_of`).
* :mod:`.claims` — :func:`next_item` hands an annotator their current image or claims a new
  one. An item holds at most ``overlap`` assignments that hold a slot, so with overlap 1 two
  annotators never hold the same image. Claims run inside :func:`backend.db.write_session`,
  whose ``BEGIN IMMEDIATE`` serialises writers, so the count-then-insert is race-free on
  SQLite (on PostgreSQL, where that statement does not exist, claims and submits of one set
  take a transaction-scoped advisory lock instead).
* :mod:`.liveness` — THE rule: a claim is live while it or its draft was touched within the
  TTL (2 h by default). A lapsed claim may be taken over by another annotator; the previous
  holder keeps their draft. Everything that claims, counts, releases or renews asks it.
* :mod:`.drafts` — drafts are upserted (:func:`save_draft`) so text survives reloads and
  restarts; :mod:`.submit` turns them into ``human_short`` / ``human_long`` caption revisions
  (append-only, see :mod:`backend.captions`) and removes the draft row.
* :mod:`.navigation` — previous / following image and where a page load resumes.
* :mod:`.review` — rejected captions come back to their author first (before any new claim),
  with the reviewer's comment; an annotator can also go back to any image they submitted and
  revise it (a new revision, status back to *submitted*).
* :mod:`.progress` — per-annotator counts and completion of a set.

Every write runs in one ``write_session``; reads use ``read_session``. Import from the
package (``from backend.annotation import next_item``): the modules are its inside.
"""

from __future__ import annotations

from backend.annotation.claims import next_item
from backend.annotation.common import (
    ACTIVE,
    DEFAULT_CLAIM_TTL,
    LONG,
    MAX_CAPTION_CHARS,
    MAX_PAGE,
    SAMPLING_METHODS,
    SHORT,
    SKIPPED,
    SUBMITTED,
    AnnotationError,
    ClaimLost,
    check_length,
)
from backend.annotation.drafts import load_draft, save_draft
from backend.annotation.navigation import (
    HistoryEntry,
    annotator_history,
    following_item,
    previous_item,
    resume_item,
)
from backend.annotation.progress import AnnotatorProgress, SetProgress, progress, user_id
from backend.annotation.review import ReviewEntry, review, review_queue, review_queue_count
from backend.annotation.sampling import allocate, alttext_bucket, object_count, stratum_of
from backend.annotation.sets import (
    create_annotation_set,
    default_set_id,
    get_set,
    list_sets,
    set_dataset_names,
)
from backend.annotation.submit import skip, submit
from backend.annotation.views import ItemView, item_view

__all__ = [
    "ACTIVE",
    "DEFAULT_CLAIM_TTL",
    "LONG",
    "MAX_CAPTION_CHARS",
    "MAX_PAGE",
    "SAMPLING_METHODS",
    "SHORT",
    "SKIPPED",
    "SUBMITTED",
    "AnnotationError",
    "AnnotatorProgress",
    "ClaimLost",
    "HistoryEntry",
    "ItemView",
    "ReviewEntry",
    "SetProgress",
    "allocate",
    "alttext_bucket",
    "annotator_history",
    "check_length",
    "create_annotation_set",
    "default_set_id",
    "following_item",
    "get_set",
    "item_view",
    "list_sets",
    "load_draft",
    "next_item",
    "object_count",
    "previous_item",
    "progress",
    "resume_item",
    "review",
    "review_queue",
    "review_queue_count",
    "save_draft",
    "set_dataset_names",
    "skip",
    "stratum_of",
    "submit",
    "user_id",
]
