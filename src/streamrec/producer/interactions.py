"""Read a dataset file into in-memory :class:`~streamrec.models.evaluation.Interactions`.

The offline counterpart of the bulk loader: rows are validated by the same
:class:`~streamrec.producer.events.EventValidator` and weighted by the same rules as the
state (additive kinds: weight × the kind's multiplier; ``rating``: the newest rating of a
user-item pair replaces older ones), but nothing touches Redis. Rows of additive kinds stay
separate (``Interactions.to_csr`` sums duplicate pairs); a pair's ratings collapse to one row.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamrec.errors import InvalidEventError
from streamrec.models.evaluation import Interactions
from streamrec.producer.events import EventValidator
from streamrec.producer.importers import ImportSource
from streamrec.settings import RATING_KIND, Settings

logger = logging.getLogger(__name__)

#: Called with the number of records read since the previous call.
Progress = Callable[[int], None]

_PROGRESS_EVERY = 10_000


@dataclass(frozen=True, eq=False)
class LoadedInteractions:
    """A dataset as dense-id interactions plus the id vocabularies.

    Attributes:
        data: the valid rows; ``weights`` are float32 weighted values, ``timestamps``
            float64 epoch seconds (NaN where the row had none).
        users: dense user id -> external user id, ``len(users) == data.n_users``.
        items: dense item id -> external item id, ``len(items) == data.n_items``.
        rejected: rows skipped because they failed validation.
        is_rating: bool per row of ``data``: True where the row is a rating (what rating
            models such as KernelMF learn from), False for additive kinds.
    """

    data: Interactions
    users: list[str]
    items: list[str]
    rejected: int
    is_rating: np.ndarray

    def ratings(self) -> Interactions:
        """Only the rating rows (same user and item id spaces)."""
        return self.data.subset(self.is_rating)


def read_interactions(
    source: ImportSource, settings: Settings, progress: Progress | None = None
) -> LoadedInteractions:
    """Validate and weight every record of ``source``; dense ids in order of first appearance.

    Args:
        source: an opened dataset (:func:`~streamrec.producer.importers.open_source`).
        settings: validation rules and kind multipliers.
        progress: called with the number of records handled since its previous call.

    Returns:
        The interactions; invalid rows are counted in ``rejected`` and skipped.
    """
    validator = EventValidator(settings)
    multipliers = settings.kind_weights
    user_ids: dict[str, int] = {}
    item_ids: dict[str, int] = {}
    users: list[int] = []
    items: list[int] = []
    weights: list[float] = []
    stamps: list[float] = []
    is_rating: list[bool] = []
    # Row of each (user, item) rating and the validated time it was given ("now" when the
    # row has no timestamp, so a later unstamped rating wins, as it would when streamed).
    ratings: dict[tuple[int, int], tuple[int, float]] = {}
    rejected = pending = 0
    for record in source.records:
        pending += 1
        if progress is not None and pending == _PROGRESS_EVERY:
            progress(pending)
            pending = 0
        if record.problem is not None:
            rejected += 1
            continue
        try:
            event = validator.make(
                record.user,
                record.item,
                record.weight,
                record.kind or "play",
                record.timestamp,
                record.event_id,
            )
        except InvalidEventError as exc:
            logger.debug("%s line %d rejected: %s", source.path, record.line, exc)
            rejected += 1
            continue
        user = user_ids.setdefault(event.user, len(user_ids))
        item = item_ids.setdefault(event.item, len(item_ids))
        stamp = math.nan if record.timestamp is None else event.timestamp
        if event.kind == RATING_KIND:
            previous = ratings.get((user, item))
            if previous is not None:
                row, given = previous
                if event.timestamp >= given:  # ties: the later line wins
                    weights[row], stamps[row] = event.weight, stamp
                    ratings[user, item] = (row, event.timestamp)
                continue
            ratings[user, item] = (len(users), event.timestamp)
            weight = event.weight
        else:
            weight = event.weight * multipliers[event.kind]
        users.append(user)
        items.append(item)
        weights.append(weight)
        stamps.append(stamp)
        is_rating.append(event.kind == RATING_KIND)
    if progress is not None and pending:
        progress(pending)
    data = Interactions(
        users=np.asarray(users, dtype=np.int64),
        items=np.asarray(items, dtype=np.int64),
        weights=np.asarray(weights, dtype=np.float32),
        timestamps=np.asarray(stamps, dtype=np.float64),
        n_users=len(user_ids),
        n_items=len(item_ids),
    )
    logger.info(
        "read %s (%s): %d interactions, %d users, %d items, %d rows rejected",
        source.path,
        source.fmt,
        len(data),
        data.n_users,
        data.n_items,
        rejected,
    )
    return LoadedInteractions(
        data, list(user_ids), list(item_ids), rejected, np.asarray(is_rating, dtype=bool)
    )
