"""Exact ridge regressions of many CSR rows against one frozen feature table, batched.

Row ``n`` of a CSR (a user's ratings, or an item's) with values ``v_j`` in columns ``j``
gets the weights ``w_n`` minimising::

    Σ_j (v_j − o_j − x_jᵀ w)²  +  |row n| · Σ_f λ_f w_f²

where ``x_j`` is row ``j`` of the feature table and ``o_j`` a per-column offset. The penalty
grows with the row's length: that is what an L2 term added per training example (per rating)
amounts to, so the solution is the training objective's exact optimum for that row with the
other side frozen. Rows of similar length are padded into groups
(:func:`~streamrec.models.padded.padded_groups`) and solved by batched matmuls and one
batched ``solve``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from streamrec.models.padded import padded_groups

#: Rows per padded group: bounds memory at ``GROUP × longest row × width`` float64.
GROUP = 64


def solve_rows(
    rows: sp.csr_matrix, features: np.ndarray, offsets: np.ndarray, penalty: np.ndarray
) -> np.ndarray:
    """The ridge weights of every row of ``rows`` (module docstring).

    Args:
        rows: ``(n, m)`` CSR; every stored entry (zeros too) is an observation.
        features: ``x_j``, shape ``(m, width)``.
        offsets: ``o_j``, shape ``(m,)``, subtracted from column ``j``'s values.
        penalty: ``λ_f``, shape ``(width,)``, each > 0 (the per-observation L2 weights).

    Returns:
        ``(n, width)`` float64 weights; rows without observations get zeros.
    """
    x = np.asarray(features, dtype=np.float64)
    offset = np.asarray(offsets, dtype=np.float64)
    diagonal = np.asarray(penalty, dtype=np.float64)
    width = x.shape[1]
    out = np.zeros((rows.shape[0], width))
    # padded_groups keeps the stored values' dtype: float64 so the solve is exact
    csr = sp.csr_matrix(rows, dtype=np.float64)
    for group in padded_groups(csr, GROUP):
        design = x[group.items] * group.mask[..., None]  # (g, L, width), padding rows zero
        target = np.where(group.mask, group.confidence - offset[group.items], 0.0)
        gram = np.matmul(design.transpose(0, 2, 1), design)
        gram += group.mask.sum(axis=1)[:, None, None] * np.diag(diagonal)[None]
        rhs = np.matmul(design.transpose(0, 2, 1), target[..., None])
        out[group.rows] = np.linalg.solve(gram, rhs)[..., 0]
    return out
