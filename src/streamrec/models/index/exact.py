"""Exact (brute-force) inner-product search over all item vectors, in numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Queries scored per matrix product (bounds memory: chunk × n_items float32).
CHUNK = 1024


class ExactIndex:
    """Brute-force top-k over item vectors.

    Args:
        vectors: item vectors, shape ``(n_items, dim)``; row ``i`` is item id ``i``. Rows of
            all zeros (ids never trained) are never returned.
    """

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._valid = np.any(self.vectors != 0, axis=1)
        self._invalid = np.flatnonzero(~self._valid)

    @property
    def n_items(self) -> int:
        """Rows the index holds."""
        return int(self.vectors.shape[0])

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by inner product.

        Args:
            queries: shape ``(n, dim)`` (a single ``(dim,)`` vector is treated as one row).
            k: results per query.
            exclude: per query, item ids never to return (e.g. what the user has seen).

        Returns:
            ``(ids, scores)``, each ``(n, k)``: int64 ids, -1 padding; float32 scores, -inf
            padding; best first.
        """
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        n = q.shape[0]
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        if k <= 0 or self.n_items == 0:
            return ids, scores
        from streamrec.models.kernels import top_k

        top = min(k, self.n_items)
        for start in range(0, n, CHUNK):
            block = q[start : start + CHUNK] @ self.vectors.T
            if len(self._invalid):
                block[:, self._invalid] = -np.inf
            if exclude is not None:
                for row, banned in enumerate(exclude[start : start + CHUNK]):
                    if len(banned):
                        block[row, np.asarray(banned, dtype=np.int64)] = -np.inf
            found, found_scores = top_k(block, top)
            ids[start : start + len(block), :top] = found
            scores[start : start + len(block), :top] = found_scores
        return ids, scores

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Set the vectors of ``ids``, growing the index for ids beyond its end."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        if ids.max() >= self.n_items:
            size = int(ids.max()) + 1
            grown = np.zeros((size, self.vectors.shape[1]), dtype=np.float32)
            grown[: self.n_items] = self.vectors
            valid = np.zeros(size, dtype=bool)
            valid[: self.n_items] = self._valid
            self.vectors, self._valid = grown, valid
        self.vectors[ids] = vectors
        self._valid[ids] = np.any(self.vectors[ids] != 0, axis=1)
        self._invalid = np.flatnonzero(~self._valid)
