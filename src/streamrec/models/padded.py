"""Users' rows in padded groups: per-user products as batched matmuls."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class PaddedGroup:
    """Users of similar history length, their confidence rows padded to one length."""

    rows: np.ndarray  # (g,) row numbers in the CSR
    items: np.ndarray  # (g, L) item ids, 0 in padding slots
    confidence: np.ndarray  # (g, L) float32 confidence before alpha, 0 in padding slots
    mask: np.ndarray  # (g, L) True for real slots


def padded_groups(conf: sp.csr_matrix, size: int = 32) -> list[PaddedGroup]:
    """Split the non-empty rows of ``conf`` into groups of up to ``size`` users of similar
    history length, padded, so that per-user products run as a few batched matmuls."""
    lengths = np.diff(conf.indptr)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    groups = []
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        width = int(lengths[rows].max())
        offsets = np.arange(width)
        mask = offsets[None, :] < lengths[rows][:, None]
        slots = np.where(mask, conf.indptr[rows][:, None] + offsets[None, :], 0)
        items = np.where(mask, conf.indices[slots], 0)
        confidence = np.where(mask, conf.data[slots], np.float32(0))
        groups.append(PaddedGroup(rows, items, confidence, mask))
    return groups


def strongest(contrib: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` history items with the largest contributions, per user and recommended item.

    Args:
        contrib: ``(g, L, k)``: history slot ``j``'s contribution to recommended item ``i``
            of user ``g``; ``-inf`` where a slot must never be named (padding, or a reason
            the model rules out). Modified in place.
        items: ``(g, L)`` history item ids of the slots.
        n: reasons per recommended item.

    Returns:
        ``(g, k, n)`` int64 item ids, strongest first, each slot named at most once; ``-1``
        where fewer than ``n`` slots are finite.
    """
    g, length, k = contrib.shape
    out = np.full((g, k, n), -1, dtype=np.int64)
    users, columns = np.arange(g)[:, None], np.arange(k)[None, :]
    for rank in range(min(n, length)):  # n is small: repeated argmax beats a sort
        best = contrib.argmax(axis=1)  # (g, k)
        # a user with fewer usable slots than ``rank`` has only -inf left: its argmax points
        # at a slot already taken, which must not be named again
        found = np.isfinite(contrib[users, best, columns])
        out[:, :, rank] = np.where(found, np.take_along_axis(items, best, axis=1), -1)
        contrib[users, best, columns] = -np.inf
    return out
