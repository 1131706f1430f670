"""Small helpers on scipy CSR matrices and row arrays shared by the models."""

from __future__ import annotations

import numpy as np
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


def grown(array: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``array`` with zero rows appended so that every id in ``ids`` is a valid row."""
    size = int(ids.max()) + 1 if ids.size else 0
    if size <= len(array):
        return array
    return np.concatenate([array, np.zeros((size - len(array), *array.shape[1:]))])
