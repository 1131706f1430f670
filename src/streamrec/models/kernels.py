"""Compiled per-user kernels of the serving hot path: ALS normal equations and the
``because`` of ALS and the two-tower.

Each kernel walks the users' CSR rows directly (no padded copies, no ``(users, history,
k)`` intermediate) and keeps the ``n`` strongest reasons per recommended item as it goes:

* :func:`solve_cholesky` builds ``A_u = YᵀY + λI + Σ_j (c_j - 1) y_j y_jᵀ`` and
  ``b_u = Σ_j c_j y_j`` per user, factors ``A_u = L Lᵀ`` (Cholesky: ``A_u`` is symmetric
  positive definite) and solves for the user's vector; the factors are kept for
  :func:`als_because`.
* :func:`als_because`: history item ``j``'s share of item ``i``'s score is
  ``c_j y_jᵀ A_u⁻¹ y_i``: triangular solves for every recommended item at once, then one
  product with the user's scaled history vectors.
* :func:`dot_because`: a share is ``w_j p_j · e_i`` (the two-tower's pooled history).

Ties keep the earlier history slot, as ``np.argmax`` would; a slot is named at most once;
``-1`` pads a user with fewer usable slots than ``n``. numba comes with this module: the
models import it where they serve, so the producer and the ingest path never load it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])
#: No `nnan`/`ninf`: the top lists start at -inf.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def _jit(func: F) -> F:
    return cast(F, numba.njit(cache=True, fastmath=FASTMATH, nogil=True)(func))


@_jit
def solve_cholesky(
    indptr: np.ndarray,
    indices: np.ndarray,
    confidence: np.ndarray,
    y: np.ndarray,
    base: np.ndarray,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Users' ALS vectors and the Cholesky factors of their normal equations.

    Args:
        indptr, indices, confidence: the users' CSR rows (confidence before ``alpha``).
        y: item factors ``(items, f)`` float64.
        base: ``YᵀY + λI``, ``(f, f)`` float64.
        alpha: the confidence scale.

    Returns:
        ``(lower (n, f, f) float64, vectors (n, f) float64)``.
    """
    n, f = len(indptr) - 1, y.shape[1]
    lower = np.zeros((n, f, f))
    vectors = np.zeros((n, f))
    b = np.empty(f)
    for u in range(n):
        lo, hi = indptr[u], indptr[u + 1]
        rows = np.empty((hi - lo, f))  # y_j, and (c_j - 1) y_j: A's update is one product
        scaled = np.empty((hi - lo, f))
        b[:] = 0.0
        for p in range(lo, hi):
            yj, row, out = y[indices[p]], rows[p - lo], scaled[p - lo]
            c = alpha * confidence[p]
            for r in range(f):  # rows as 1-d views: the inner loops vectorise
                row[r] = yj[r]
                out[r] = (c - 1.0) * yj[r]
                b[r] += c * yj[r]
        a = base + rows.T @ scaled
        low = lower[u]
        for r in range(f):  # Cholesky, lower triangle of a
            lr = low[r]
            for q in range(r + 1):
                lq = low[q]
                s = a[r, q]
                for t in range(q):
                    s -= lr[t] * lq[t]
                if r == q:
                    lr[r] = np.sqrt(max(s, 1e-300))
                else:
                    lr[q] = s / lq[q]
        _cho_solve(low, b, vectors[u])
    return lower, vectors


@_jit
def _cho_solve(low: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = (L Lᵀ)⁻¹ b``."""
    f = len(b)
    for r in range(f):  # L z = b
        lr = low[r]
        s = b[r]
        for t in range(r):
            s -= lr[t] * out[t]
        out[r] = s / lr[r]
    for r in range(f - 1, -1, -1):  # Lᵀ x = z
        s = out[r]
        for t in range(r + 1, f):
            s -= low[t, r] * out[t]
        out[r] = s / low[r, r]


@_jit
def _top(values: np.ndarray, best: np.ndarray, named: np.ndarray) -> None:
    """Fill ``best``/``named`` with the ``len(best)`` largest finite ``values`` and their
    positions, largest first, earlier positions first among ties (as a stable sort would);
    ``-inf`` / ``-1`` pad the rest. NaN never enters."""
    n = len(best)
    best[:] = -np.inf
    named[:] = -1
    floor = -np.inf
    for j in range(len(values)):
        value = values[j]
        if not value > floor:
            continue
        at = n - 1
        while at > 0 and value > best[at - 1]:
            best[at] = best[at - 1]
            named[at] = named[at - 1]
            at -= 1
        best[at] = value
        named[at] = j
        floor = best[n - 1]


@_jit
def _top_columns(scores: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """``out[i]``: the ``slots`` of the ``out.shape[1]`` largest finite ``scores[:, i]``."""
    n = out.shape[1]
    best = np.empty(n)
    named = np.empty(n, dtype=np.int64)
    for i in range(scores.shape[1]):
        _top(scores[:, i], best, named)
        for r in range(n):
            out[i, r] = slots[named[r]] if named[r] >= 0 else -1


@_jit
def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` ``(n, m)``, the columns of the ``k`` largest finite values and
    the values, best first (lower column first among ties): ``(ids (n, k) int64, -1
    padding; scores (n, k) float32, -inf padding)``."""
    n = scores.shape[0]
    ids = np.empty((n, k), dtype=np.int64)
    best = np.empty((n, k), dtype=np.float32)
    for r in range(n):
        _top(scores[r], best[r], ids[r])
    return ids, best


@_jit
def als_because(
    indptr: np.ndarray,
    indices: np.ndarray,
    confidence: np.ndarray,
    y: np.ndarray,
    lower: np.ndarray,
    alpha: float,
    items: np.ndarray,
    n: int,
) -> np.ndarray:
    """The ``n`` history items with the largest share ``c_j y_jᵀ A_u⁻¹ y_i`` of each
    recommended item ``i``'s score: ``(users, k, n)`` int64, ``-1`` padding.

    Args:
        indptr, indices, confidence: the users' CSR rows (confidence before ``alpha``).
        y: item factors ``(items, f)`` float64.
        lower: Cholesky factors from :func:`solve_cholesky`.
        alpha: the confidence scale.
        items: recommended ids ``(users, k)``, ``-1`` for empty slots.
        n: reasons per recommended item.
    """
    users, k = items.shape
    f = y.shape[1]
    out = np.full((users, k, n), -1, dtype=np.int64)
    z = np.empty((f, k))
    for u in range(users):
        low = lower[u]
        for i in range(k):
            z[:, i] = y[max(items[u, i], 0)]
        for r in range(f):  # L w = y_i for every i at once, then Lᵀ z = w
            zr, lr = z[r], low[r]
            for t in range(r):
                m, zt = lr[t], z[t]
                for i in range(k):
                    zr[i] -= m * zt[i]
            for i in range(k):
                zr[i] /= lr[r]
        for r in range(f - 1, -1, -1):
            zr = z[r]
            for t in range(r + 1, f):
                m, zt = low[t, r], z[t]
                for i in range(k):
                    zr[i] -= m * zt[i]
            for i in range(k):
                zr[i] /= low[r, r]
        lo, hi = indptr[u], indptr[u + 1]
        h = np.empty((hi - lo, f))
        for p in range(lo, hi):
            c = alpha * confidence[p]
            row, hp = y[indices[p]], h[p - lo]
            for r in range(f):
                hp[r] = row[r] * c
        _top_columns(h @ z, indices[lo:hi], out[u])
        for i in range(k):
            if items[u, i] < 0:
                out[u, i] = -1
    return out


@_jit
def dot_because(
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    history: np.ndarray,
    targets: np.ndarray,
    items: np.ndarray,
    n: int,
) -> np.ndarray:
    """The ``n`` history items with the largest share ``w_j h_j · t_i`` of each recommended
    item ``i``'s score; slots of weight 0 are never named: ``(users, k, n)`` int64, ``-1``
    padding.

    Args:
        indptr, indices, weights: the users' CSR rows of pooling weights.
        history: history vectors ``h`` ``(items, d)`` float32.
        targets: item vectors ``t`` ``(items, d)`` float32.
        items: recommended ids ``(users, k)``, ``-1`` for empty slots.
        n: reasons per recommended item.
    """
    users, k = items.shape
    d = history.shape[1]
    out = np.full((users, k, n), -1, dtype=np.int64)
    t = np.empty((d, k), dtype=np.float32)
    for u in range(users):
        for i in range(k):
            t[:, i] = targets[max(items[u, i], 0)]
        lo, hi = indptr[u], indptr[u + 1]
        used = 0
        for p in range(lo, hi):
            used += weights[p] != 0
        h = np.empty((used, d), dtype=np.float32)
        slots = np.empty(used, dtype=np.int64)
        at = 0
        for p in range(lo, hi):
            if weights[p] != 0:
                row, hp, wp = history[indices[p]], h[at], weights[p]
                for r in range(d):
                    hp[r] = row[r] * wp
                slots[at] = indices[p]
                at += 1
        if used:
            _top_columns(h @ t, slots, out[u])
        for i in range(k):
            if items[u, i] < 0:
                out[u, i] = -1
    return out
