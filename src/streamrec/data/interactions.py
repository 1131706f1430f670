"""Interactions in memory (:class:`Interactions`), and reading a dataset file into them.

The offline counterpart of the bulk loader: rows are validated by the same
:class:`~streamrec.events.EventValidator` and weighted by the same rules as the
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
import numpy.typing as npt
import scipy.sparse

from streamrec.data.importers import ImportSource
from streamrec.data.item_features import ItemFeatures, item_features
from streamrec.errors import InvalidEventError
from streamrec.events import EventValidator
from streamrec.settings import RATING_KIND, Settings

logger = logging.getLogger(__name__)

#: Called with the number of records read since the previous call.
Progress = Callable[[int], None]

_PROGRESS_EVERY = 10_000


_DTYPES = {"users": np.int64, "items": np.int64, "weights": np.float32, "timestamps": np.float64}


@dataclass(frozen=True, eq=False)
class Interactions:
    """Interactions as parallel arrays, one row per user-item pair (inputs converted, checked).

    Attributes:
        users: int64 dense user ids, shape (n,).
        items: int64 dense item ids, shape (n,).
        weights: float32 interaction strengths, shape (n,).
        timestamps: float64 epoch seconds, shape (n,); NaN where unknown.
        n_users: number of users (rows of the matrix).
        n_items: number of items (columns of the matrix).
        item_features: per item, its features (:mod:`streamrec.data.item_features`:
            tags, name words), ``n_items`` tuples; None when nothing is known of the items.
    """

    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32]
    timestamps: npt.NDArray[np.float64]
    n_users: int
    n_items: int
    item_features: ItemFeatures | None = None

    def __post_init__(self) -> None:
        n = np.shape(self.users)
        for name, dtype in _DTYPES.items():
            array = np.asarray(getattr(self, name), dtype=dtype)
            if len(n) != 1 or array.shape != n:
                raise ValueError(f"{name} must have shape (n,) like users {n} (got {array.shape})")
            object.__setattr__(self, name, array)  # frozen: store the converted array once
        for ids, bound in ((self.users, self.n_users), (self.items, self.n_items)):
            if ids.size and not 0 <= ids.min() <= ids.max() < bound:
                raise ValueError(f"ids must lie in [0, {bound}) (got {ids.min()}..{ids.max()})")
        if self.item_features is not None and len(self.item_features) != self.n_items:
            raise ValueError(
                f"item_features must have one entry per item, {self.n_items} "
                f"(got {len(self.item_features)})"
            )

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def to_csr(self) -> scipy.sparse.csr_matrix:
        """Users × items float32 matrix, shape (n_users, n_items), duplicate pairs summed.

        A canonical ``scipy.sparse.csr_matrix`` (not ``csr_array``) with int32 ``indptr`` and
        ``indices``: the layout ``implicit`` expects.
        """
        if max(len(self), self.n_users, self.n_items) > np.iinfo(np.int32).max:
            raise ValueError(f"too large for int32 indices ({len(self)} interactions)")
        ids = (self.users.astype(np.int32), self.items.astype(np.int32))
        shape = (self.n_users, self.n_items)
        csr = scipy.sparse.csr_matrix((self.weights, ids), shape=shape, dtype=np.float32)
        csr.sum_duplicates()
        csr.indptr = csr.indptr.astype(np.int32, copy=False)
        csr.indices = csr.indices.astype(np.int32, copy=False)
        return csr

    def subset(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.integer]) -> Interactions:
        """The rows selected by ``mask`` (bool, shape (n,), or integer positions), same sizes
        and item features."""
        parts = (self.users[mask], self.items[mask], self.weights[mask], self.timestamps[mask])
        return Interactions(
            *parts, n_users=self.n_users, n_items=self.n_items, item_features=self.item_features
        )


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
        source: an opened dataset (:func:`~streamrec.data.importers.open_source`).
        settings: validation rules and kind multipliers.
        progress: called with the number of records handled since its previous call.

    Returns:
        The interactions (with the features of their items, from the source's names and
        tags); invalid rows are counted in ``rejected`` and skipped.
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
        # After the records: a source may learn its names while they are read (lastfm-360k).
        item_features=item_features(list(item_ids), source.item_names, source.item_tags),
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
