"""Why KernelMF recommends an item: the user's liked items most alike it.

Matrix factorisation has no exact decomposition of a score by history item (ALS's
:meth:`~streamrec.models.als.ImplicitALS.because` has one), so a KernelMF recommendation is
explained by the user's ratings above the global mean whose items' factors are closest
(cosine) to the recommended item's, each weighted by how far above the mean it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from streamrec.models.padded import strongest

if TYPE_CHECKING:
    from streamrec.models.kernel_mf import KernelMF


def liked_and_alike(model: KernelMF, ratings: sp.csr_matrix, ids: np.ndarray, n: int) -> np.ndarray:
    """Per user and recommended item, the ``n`` rated items above the global mean whose
    factors are closest (cosine) to the item's, weighted by how far above; ``-1`` padding."""
    out = np.full((*ids.shape, n), -1, dtype=np.int64)
    lengths = np.diff(ratings.indptr)
    width = int(lengths.max(initial=0))
    if n == 0 or width == 0:
        return out
    q = model.item_factors
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    unit = np.divide(q, norms, out=np.zeros_like(q), where=norms > 0)
    offsets = np.arange(width)
    mask = offsets[None, :] < lengths[:, None]
    slots = np.where(mask, ratings.indptr[:-1, None] + offsets[None, :], 0)
    rated = np.where(mask, ratings.indices[slots], 0)
    lift = np.where(mask, ratings.data[slots] - model.global_mean, 0.0)
    # affinity[u, j, i] = lift_j · cos(q_j, q_i), kept only where the rating is above the mean
    affinity = np.matmul(unit[rated], unit[np.maximum(ids, 0)].transpose(0, 2, 1))
    affinity = affinity * lift[..., None]
    affinity[~((lift > 0) & mask)] = -np.inf
    affinity[affinity <= 0] = -np.inf  # an item unlike the recommended one explains nothing
    out = strongest(affinity, rated, n)
    out[ids < 0] = -1
    return out
