"""A model's item indexes in its version folder: ScaNN's files when it has a ScaNN index, none
for an exact one (rebuilt from the vectors at load, which costs nothing).

A model whose ``similar`` is the cosine of item vectors (:class:`SimilarByCosine`) keeps a
second index over its L2-normalised item vectors (cosine = inner product of unit vectors),
built, saved, loaded, upserted and rebuilt beside the top-k one, under :data:`SIMILAR`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamrec.models.index.exact import ExactIndex
from streamrec.models.index.scann import ScannIndex, build_index

#: Sub-folder of a model version holding its ScaNN index.
FOLDER = "index"
#: Sub-folder holding the ScaNN index of its unit item vectors (``similar``).
SIMILAR = "similar_index"

Index = ExactIndex | ScannIndex


def save_index(index: Index, folder: Path, name: str = FOLDER) -> None:
    """Write ``index`` beside a model's files in ``folder``, under ``name`` (nothing for an
    exact index)."""
    if isinstance(index, ScannIndex):
        index.save(folder / name)


def saved_index(folder: Path, name: str = FOLDER) -> ScannIndex | None:
    """The index saved in ``folder`` under ``name`` (with the items upserted into it since
    its build), or None when the model was saved with an exact one."""
    if (folder / name / "index.json").exists():
        return ScannIndex.load(folder / name)
    return None


def load_index(vectors: np.ndarray, folder: Path, exact_below: int, name: str = FOLDER) -> Index:
    """The index saved in ``folder`` under ``name``, or one built over ``vectors``
    (:func:`~streamrec.models.index.scann.build_index`)."""
    return saved_index(folder, name) or build_index(vectors, exact_below=exact_below)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (``(n, dim)``) with every non-zero row scaled to length 1, float32; zero
    rows (untrained ids) stay zero, so the index never returns them."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.asarray(np.divide(v, norms, out=np.zeros_like(v), where=norms > 0))


def build_similar_index(vectors: np.ndarray, exact_below: int) -> Index:
    """The ``similar`` index of item ``vectors``: :func:`build_index` over their unit rows."""
    return build_index(unit_rows(vectors), exact_below=exact_below)


def load_similar_index(vectors: np.ndarray, folder: Path, exact_below: int) -> Index:
    """The ``similar`` index saved in ``folder``, or one built over the unit rows of
    ``vectors`` (an exact one, or a version saved before it had a ``similar`` index)."""
    return load_index(unit_rows(vectors), folder, exact_below, SIMILAR)


class RebuildsIndex:
    """For a model with an item index (``self.index``) and ``params.exact_below``."""

    index: Any
    params: Any

    def rebuild_index(self) -> None:
        """Build the item index afresh: items folded in since it was built join ScaNN's."""
        self.index = rebuilt(self.index, self.params.exact_below)


class SimilarByCosine(RebuildsIndex):
    """For a model whose ``similar`` is the cosine of its item vectors: it keeps
    ``self.similar_index`` (:func:`build_similar_index`) as current as ``self.index`` (upserts
    through :meth:`upsert_similar`, rebuilt with it)."""

    similar_index: Any

    def rebuild_index(self) -> None:
        """Build both item indexes afresh: items folded in since their build join ScaNN's."""
        super().rebuild_index()
        self.similar_index = rebuilt(self.similar_index, self.params.exact_below)

    def upsert_similar(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Give items ``ids`` the item vectors ``vectors`` (``(n, dim)``, not normalised) in
        the ``similar`` index: new ones are similar-able at once, from its exact delta."""
        self.similar_index.upsert(ids, unit_rows(vectors))

    def similar_items(self, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by cosine similarity of item vectors, each query item excluded.

        Args:
            item_ids: ``(n,)`` item ids (a scalar is one query).
            k: results per query.

        Returns:
            ``(ids, scores)``, each ``(n, k)``: int64 ids, ``-1`` padding; float32 cosines,
            ``-inf`` padding; best first.
        """
        ids = np.atleast_1d(np.asarray(item_ids, dtype=np.int64))
        index = self.similar_index
        # k + 1 without an exclusion list keeps ScaNN on its fast path; the query item
        # (usually first) is dropped after, or the last result when it was not found
        found, scores = index.search(index.vectors[ids], k + 1)
        order = np.argsort(found == ids[:, None], axis=1, kind="stable")[:, :k]
        r = np.arange(len(ids))[:, None]
        return found[r, order], scores[r, order]


def rebuilt(index: Index, exact_below: int) -> Index:
    """A fresh index over ``index``'s vectors: the items upserted since its build join
    ScaNN's own (or an exact index when the catalogue is small)."""
    return build_index(index.vectors, exact_below=exact_below)
