"""Small helpers on scipy CSR matrices shared by the models."""

from __future__ import annotations

import scipy.sparse as sp


def with_width(matrix: sp.csr_matrix, width: int) -> sp.csr_matrix:
    """``matrix`` with exactly ``width`` columns: extra columns cut, missing ones empty."""
    if matrix.shape[1] == width:
        return matrix
    if matrix.shape[1] > width:
        return sp.csr_matrix(matrix[:, :width])
    return sp.csr_matrix(
        (matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], width)
    )
