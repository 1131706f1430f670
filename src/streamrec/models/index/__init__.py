"""Item indexes: top-k item search for batches of query vectors.

Every index answers ``search(queries, k, exclude)`` with ``(ids, scores)`` of shape
``(n_queries, k)``: ids are int64 item ids (``-1`` pads a row with fewer than ``k``
candidates), scores float32 inner products (``-inf`` on padding). ``ExactIndex`` ranks
every item, and is the oracle of the tests; ``ScannIndex`` searches a ScaNN tree (through
its TensorFlow-free pybind module) plus an exact delta of the items upserted since its
build. :func:`build_index` picks one by catalogue size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from streamrec.models.index.exact import ExactIndex
from streamrec.models.index.scann import ScannIndex, build_index
from streamrec.models.index.scann_params import ScannParams


class ItemIndex(Protocol):
    """What every item index provides."""

    @property
    def n_items(self) -> int:
        """Rows (item ids) the index can return."""
        ...

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by inner product for each query row, skipping ``exclude[i]``."""
        ...

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace item vectors (items folded in after training)."""
        ...


__all__ = ["ExactIndex", "ItemIndex", "ScannIndex", "ScannParams", "build_index"]
