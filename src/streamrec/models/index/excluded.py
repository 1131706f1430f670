"""The excluded ids of one batched search (what each user has seen), looked up at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ExcludedIds:
    """The excluded ids of one search call, as sorted ``row · n_items + id`` keys (one
    vectorised lookup for a whole batch). Ids outside ``[0, n_items)`` are dropped."""

    def __init__(self, exclude: Sequence[np.ndarray], n: int, n_items: int) -> None:
        if len(exclude) != n:
            raise ValueError(f"exclude needs one entry per query ({n}) (got {len(exclude)})")
        self.rows = [np.asarray(e, dtype=np.int64).ravel() for e in exclude]
        self.rows = [r[(r >= 0) & (r < n_items)] for r in self.rows]
        self.lengths = np.array([len(r) for r in self.rows], dtype=np.int64)
        self.row_of = np.repeat(np.arange(n, dtype=np.int64), self.lengths)
        self.ids = np.concatenate(self.rows) if n else np.empty(0, dtype=np.int64)
        self.stride = n_items
        self.keys = np.sort(self.row_of * n_items + self.ids)

    def hits(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Whether ``ids[j, :]`` is excluded for query ``rows[j]``."""
        if len(self.keys) == 0:
            return np.zeros(ids.shape, dtype=bool)
        keys = rows[:, None] * self.stride + ids
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.asarray(self.keys[at] == keys)

    def positions_in(self, sorted_ids: np.ndarray) -> list[np.ndarray]:
        """Per query, the positions in ``sorted_ids`` of its excluded ids."""
        at = np.minimum(np.searchsorted(sorted_ids, self.ids), len(sorted_ids) - 1)
        inside = sorted_ids[at] == self.ids
        counts = np.bincount(self.row_of[inside], minlength=len(self.rows))
        return np.split(at[inside], np.cumsum(counts)[:-1])


def excluded_of(banned: ExcludedIds | None, row: int) -> np.ndarray:
    """The excluded ids of query ``row`` (none without an exclusion)."""
    return np.empty(0, dtype=np.int64) if banned is None else banned.rows[row]
