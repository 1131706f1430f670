"""Approximate inner-product search with ScaNN, plus an exact delta for late items.

ScaNN (tree partitioning, asymmetric hashing, exact float32 reorder) indexes the
item vectors present at build time. Items upserted afterwards (new ids, or built items
whose vector changed) are searched exactly in a small numpy *delta*; a re-vectored built
item is masked in ScaNN's results so its stale vector is never served. Results of both
merge by score. :meth:`ScannIndex.rebuild` (or :func:`build_index` on all vectors) folds
the delta into a new searcher.

Excluded ids are filtered from more results than ``k``; a row the filter leaves short is
searched again for more (more results, more leaves), then exactly as a last resort.

Only ScaNN's pybind searcher is used, never its TensorFlow ops, and it is imported
without TensorFlow (:func:`~streamrec.models.index.scann_params.scann_pybind`). Saved
indexes are pickle-free: ScaNN's own files (no docids, so no ``scann_docids.pkl``), our
row mapping and vectors as ``.npy``, the parameters as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.errors import ConfigError
from streamrec.models.index.exact import ExactIndex
from streamrec.models.index.excluded import ExcludedIds, excluded_of
from streamrec.models.index.scann_params import (
    EXACT_BELOW,
    ScannParams,
    build_searcher,
    norm_cv,
    scann_pybind,
)

#: Version of the folder layout :meth:`ScannIndex.save` writes.
FORMAT = 1
_META = "index.json"


class ScannIndex:
    """Top-k inner-product search through ScaNN, with the semantics of ``ExactIndex``.

    Args:
        vectors: item vectors, shape ``(n_items, dim)``; row ``i`` is item id ``i``. Rows
            of all zeros (ids never trained) are never returned. The index owns the array
            (like ``ExactIndex``): change it only through :meth:`upsert`.
        params: ScaNN's knobs; ``None`` fields are derived from the number of non-zero
            rows (:meth:`ScannParams.resolved`).
    """

    def __init__(self, vectors: np.ndarray, params: ScannParams | None = None) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D (n_items, dim) (got shape {vectors.shape})")
        self.requested = params or ScannParams()
        self.rebuild()

    def rebuild(self) -> None:
        """Build a new searcher over every current non-zero vector (the delta folds in)."""
        valid = np.any(self.vectors != 0, axis=1)
        built = np.flatnonzero(valid)
        data = self.vectors if len(built) == self.n_items else self.vectors[built]
        params = self.requested.resolved(len(built), norm_cv(data))
        searcher = build_searcher(data, params) if len(built) else None
        self._install(searcher, params, built, valid)

    def _install(
        self, searcher: Any, params: ScannParams, built: np.ndarray, valid: np.ndarray
    ) -> None:
        self._searcher = searcher
        self.params = params
        self._built = built.astype(np.int64)  # ScaNN row -> item id
        self._position = np.full(self.n_items, -1, dtype=np.int64)  # item id -> ScaNN row
        self._position[self._built] = np.arange(len(self._built))
        self._stale = np.zeros(len(self._built), dtype=bool)
        self._n_stale = 0
        self._valid = valid
        self._set_delta(np.empty(0, dtype=np.int64))

    def _set_delta(self, ids: np.ndarray) -> None:
        self._delta = ids  # sorted item ids searched exactly
        self._delta_index = ExactIndex(self.vectors[ids]) if len(ids) else None

    @property
    def n_items(self) -> int:
        """Rows (item ids) the index holds."""
        return int(self.vectors.shape[0])

    @property
    def n_delta(self) -> int:
        """Items searched exactly until the next rebuild (new or re-vectored)."""
        return len(self._delta)

    def in_build(self, ids: np.ndarray) -> np.ndarray:
        """Whether ScaNN's own build serves each of ``ids`` (False: the delta, or nothing)."""
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        pos = np.full(len(ids), -1, dtype=np.int64)
        inside = (ids >= 0) & (ids < self.n_items)
        pos[inside] = self._position[ids[inside]]
        return (pos >= 0) & ~self._stale[np.maximum(pos, 0)] if len(self._stale) else pos >= 0

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by inner product (approximate over the built items).

        Args:
            queries: shape ``(n, dim)`` (a single ``(dim,)`` vector is treated as one row).
            k: results per query.
            exclude: per query, item ids never to return (e.g. what the user has seen).

        Returns:
            ``(ids, scores)``, each ``(n, k)``: int64 ids, -1 padding; float32 exact inner
            products, -inf padding; best first. A row is padded only when fewer than ``k``
            items are eligible.
        """
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        n, k = q.shape[0], max(k, 0)
        if k == 0 or self.n_items == 0:
            return np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, np.float32)
        banned = None if exclude is None else ExcludedIds(exclude, n, self.n_items)
        ids, scores, short = self._search_built(q, k, banned)
        if self.n_delta:
            assert self._delta_index is not None
            local = None if banned is None else banned.positions_in(self._delta)
            more_ids, more_scores = self._delta_index.search(q, k, local)
            more_ids = np.where(more_ids >= 0, self._delta[more_ids], -1)
            ids, scores = _merge(ids, scores, more_ids, more_scores, k)
        for row in short:
            ids[row], scores[row] = self._exact_row(q[row], k, excluded_of(banned, row))
        return ids, scores

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Set the vectors of ``ids``, growing the index for ids beyond its end.

        New and changed items are served exactly from the delta at once; built items whose
        vector changed are masked in ScaNN's results. A zero vector removes an item.
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) == 0:
            return
        if ids.min() < 0:
            raise ValueError(f"item ids must be ≥ 0 (got {int(ids.min())})")
        new = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.vectors.shape[1])
        last = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]  # last write wins
        ids, new = ids[last], new[last]
        if ids.max() >= self.n_items:
            self._grow(int(ids.max()) + 1)
        pos = self._position[ids]
        built = pos >= 0
        changed = np.zeros(len(ids), dtype=bool)
        changed[built] = ~self._stale[pos[built]] & np.any(
            self.vectors[ids[built]] != new[built], axis=1
        )
        self._stale[pos[changed]] = True
        self._n_stale = int(self._stale.sum())
        self.vectors[ids] = new
        self._valid[ids] = np.any(new != 0, axis=1)
        exact = ~built  # served by the delta from now on: new or re-vectored items
        exact[built] = self._stale[pos[built]]
        keep = self._delta[~np.isin(self._delta, ids)]
        self._set_delta(np.union1d(keep, ids[exact & self._valid[ids]]))

    def save(self, folder: Path) -> None:
        """Write the index into ``folder``: ScaNN's files under ``scann/``, ``.npy`` arrays
        and ``index.json`` (written last: a folder without it is incomplete)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _META).unlink(missing_ok=True)
        if self._searcher is not None:
            (folder / "scann").mkdir(exist_ok=True)
            # relative paths in scann_assets.pbtxt, so the folder can move
            self._searcher.serialize(str(folder / "scann"), relative_path=True)
        np.save(folder / "vectors.npy", self.vectors)
        np.save(folder / "built_ids.npy", self._built)
        np.save(folder / "stale.npy", np.flatnonzero(self._stale))
        np.save(folder / "delta_ids.npy", self._delta)
        meta = {
            "format": FORMAT,
            "index": "scann",
            "params": asdict(self.params),
            "requested": asdict(self.requested),
        }
        (folder / _META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> ScannIndex:
        """Read an index :meth:`save` wrote (no pickle is ever read).

        Raises:
            ConfigError: the folder is incomplete, of another format, or holds a pickle.
        """
        folder = Path(folder)
        if not (folder / _META).is_file():
            raise ConfigError(f"{folder} holds no saved ScaNN index (no {_META})")
        meta = json.loads((folder / _META).read_text())
        if meta.get("format") != FORMAT or meta.get("index") != "scann":
            raise ConfigError(f"{folder / _META} is not a ScaNN index of format {FORMAT}")
        if (folder / "scann" / "scann_docids.pkl").exists():
            raise ConfigError(f"{folder / 'scann'} holds scann_docids.pkl; refusing a pickle")

        def array(name: str) -> np.ndarray:
            return np.asarray(np.load(folder / name, allow_pickle=False))

        index = cls.__new__(cls)
        index.vectors = np.ascontiguousarray(array("vectors.npy"), dtype=np.float32)
        index.requested = ScannParams(**meta["requested"])
        built = array("built_ids.npy")
        searcher = None
        if len(built):
            searcher = scann_pybind().load_searcher(
                str(folder / "scann"), assets_backcompat_shim=False
            )
        valid = np.any(index.vectors != 0, axis=1)
        index._install(searcher, ScannParams(**meta["params"]), built, valid)
        index._stale[array("stale.npy")] = True
        index._n_stale = int(index._stale.sum())
        index._set_delta(array("delta_ids.npy").astype(np.int64))
        return index

    def _grow(self, size: int) -> None:
        grown = np.zeros((size, self.vectors.shape[1]), dtype=np.float32)
        grown[: self.n_items] = self.vectors
        self.vectors = grown
        self._valid = np.concatenate([self._valid, np.zeros(size - len(self._valid), bool)])
        gap = np.full(size - len(self._position), -1, dtype=np.int64)
        self._position = np.concatenate([self._position, gap])

    def _search_built(
        self, q: np.ndarray, k: int, banned: ExcludedIds | None
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """ScaNN's top-``k`` per row after filtering, refilled by asking for more; rows
        still short after ``refill_rounds`` are returned for exact search."""
        n, n_built = len(q), len(self._built)
        leaves = self.params.leaves_to_search or 0
        if self._searcher is not None and banned is None and not self._n_stale:
            pos, dist = self._query(q, min(k, n_built), k, leaves)  # the common, fast path
            if pos.shape[1] == k and not np.isnan(dist).any():
                return self._built[pos], dist, []
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        if self._searcher is None:
            return ids, scores, []
        # stale rows are masked too, but few reach a top list: a refill covers the rest
        extra = np.full(n, min(self._n_stale, k), dtype=np.int64)
        if banned is not None:
            extra += banned.lengths
        overfetch = _ceil_pow2(np.minimum(extra, self.params.max_overfetch))
        wanted = np.minimum(np.where(extra > 0, k + overfetch, k), n_built)
        pending = np.arange(n)
        for round_ in range(self.params.refill_rounds + 1):
            short = []
            for m, rows in _groups(wanted, pending):
                found = self._query(q[rows], m, k, leaves)
                short += self._keep(rows, found, k, banned, ids, scores)
            pending = np.asarray(short, dtype=np.int64)
            if len(pending) == 0 or round_ == self.params.refill_rounds:
                break
            wanted[pending] = np.minimum(wanted[pending] * 4, n_built)
            leaves = min(leaves * 4, self.params.num_leaves or 0)
        return ids, scores, [int(r) for r in pending]

    def _query(self, q: np.ndarray, m: int, k: int, leaves: int) -> tuple[np.ndarray, np.ndarray]:
        """ScaNN's ``m`` best for ``k`` wanted: the ``m - k`` more are there to be filtered,
        and need one reordered candidate each, not ``reorder_multiple``."""
        wanted = min(k, m)
        pre = max(self.params.reorder, self.params.reorder_multiple * wanted + m - wanted, m)
        found, dist = self._searcher.search_batched(q, m, pre, leaves or None)
        return found.astype(np.int64), dist

    def _keep(
        self,
        rows: np.ndarray,
        found: tuple[np.ndarray, np.ndarray],
        k: int,
        banned: ExcludedIds | None,
        ids: np.ndarray,
        scores: np.ndarray,
    ) -> list[int]:
        """Write each row's first ``k`` usable results into ``ids``/``scores``; return the
        rows left short while more eligible items exist."""
        pos, dist = found
        bad = np.isnan(dist)  # ScaNN pads with row 0 and NaN
        if self._n_stale:
            bad |= self._stale[pos]
        got = self._built[pos]
        if banned is not None:
            bad |= banned.hits(rows, got)
        take = min(k, pos.shape[1])
        if not bad.any():  # nothing filtered: every row is full
            ids[rows, :take], scores[rows, :take] = got[:, :take], dist[:, :take]
            return []
        order = np.argsort(bad, axis=1, kind="stable")[:, :take]
        r = np.arange(len(rows))[:, None]  # fancy indexing: take_along_axis costs ~10 µs
        ok = ~bad[r, order]
        ids[rows, :take] = np.where(ok, got[r, order], -1)
        scores[rows, :take] = np.where(ok, dist[r, order], -np.inf)
        counts = ok.sum(axis=1)
        return [
            int(rows[j])
            for j in np.flatnonzero(counts < k)
            if counts[j] < self._eligible(excluded_of(banned, int(rows[j])))
        ]

    def _eligible(self, banned: np.ndarray) -> int:
        """Built items a query excluding ``banned`` may get from ScaNN."""
        pos = self._position[np.unique(banned)]
        pos = pos[pos >= 0]
        return len(self._built) - self._n_stale - int(np.count_nonzero(~self._stale[pos]))

    def _exact_row(
        self, query: np.ndarray, k: int, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ query
        scores[~self._valid] = -np.inf
        scores[banned] = -np.inf
        top = min(k, len(scores))
        part = np.argpartition(-scores, top - 1)[:top]
        part = part[np.argsort(-scores[part], kind="stable")]
        found = np.isfinite(scores[part])
        ids = np.full(k, -1, dtype=np.int64)
        best = np.full(k, -np.inf, dtype=np.float32)
        ids[:top] = np.where(found, part, -1)
        best[:top] = np.where(found, scores[part], -np.inf)
        return ids, best


def build_index(
    vectors: np.ndarray, params: ScannParams | None = None, *, exact_below: int = EXACT_BELOW
) -> ExactIndex | ScannIndex:
    """The index a catalogue of this size deserves: exact below ``exact_below`` non-zero
    rows, ScaNN from there on.

    Args:
        vectors: item vectors, shape ``(n_items, dim)``, float32; zero rows are untrained ids.
        params: ScaNN's knobs (ignored for an exact index).
        exact_below: the smallest count of non-zero rows that gets a ScaNN index.
    """
    n_searchable = int(np.count_nonzero(np.any(np.asarray(vectors) != 0, axis=1)))
    if n_searchable < exact_below:
        return ExactIndex(vectors)
    return ScannIndex(vectors, params)


def _merge(
    a_ids: np.ndarray, a_scores: np.ndarray, b_ids: np.ndarray, b_scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([a_ids, b_ids], axis=1)
    scores = np.concatenate([a_scores, b_scores], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    r = np.arange(len(ids))[:, None]
    return ids[r, order], scores[r, order]


def _groups(wanted: np.ndarray, pending: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``pending`` rows grouped by the result count they want (one ScaNN call each)."""
    counts = wanted[pending]
    if counts.min() == counts.max():
        return [(int(counts[0]), pending)]
    return [(int(m), pending[counts == m]) for m in np.unique(counts)]


def _ceil_pow2(values: np.ndarray) -> np.ndarray:
    """The next power of two ≥ each value (≥ 1), so few distinct result counts are asked."""
    return np.asarray(np.left_shift(1, np.ceil(np.log2(np.maximum(values, 1))).astype(np.int64)))
