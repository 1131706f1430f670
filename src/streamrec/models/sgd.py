"""Numba kernels of :class:`~streamrec.models.kernel_mf.KernelMF`: per-rating prediction, loss,
exact gradients and the SGD loops (imported only by the explicit-rating models).

With ``a`` the lowest rating, ``c`` the rating range, ``z₀`` the model's offset and
``e = r̂ − r``, each rating contributes the loss::

    L = ½ e² + ½ λ_b (b_u² + b_i²) + ½ λ (‖p‖² + ‖q‖²)

    linear:   r̂ = z₀ + b_u + b_i + p·q
    sigmoid:  r̂ = a + c σ(z₀ + b_u + b_i + p·q)
    rbf:      r̂ = a + c exp(−γ ‖p − q‖²)      (no biases: their gradient is λ_b b only)

:func:`rating_gradients` is the one place the gradients are written; every loop here calls
it, and the finite-difference tests check it against :func:`rating_loss`.

``fastmath`` is limited to reassociation, contraction (FMA), ``nsz`` and ``arcp``: enough for
LLVM to vectorise the factor loops (full fastmath is no faster), while NaN and inf keep their
meaning, so a diverging fit shows as a non-finite loss instead of being optimised into
garbage. Reassociation makes the last bits depend on the CPU's vector width, never on the
data order or the batch. Squares are written ``x * x``: ``x ** 2`` in the rbf branch slowed
every kernel's loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import numba
import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from streamrec.models.kernel_mf_params import KernelMFParams

LINEAR, SIGMOID, RBF = 0, 1, 2
KERNELS = {"linear": LINEAR, "sigmoid": SIGMOID, "rbf": RBF}
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

Array = np.ndarray
F = TypeVar("F", bound=Callable[..., Any])


def _jit(func: F) -> F:
    return cast(F, numba.njit(cache=True, fastmath=FASTMATH)(func))


def _inlined(func: F) -> F:
    """Compiled into each caller at numba's IR level: called per rating, a real call (with
    the arrays' reference counting) would cost as much as the arithmetic."""
    return cast(F, numba.njit(cache=True, fastmath=FASTMATH, inline="always")(func))


class Kernel(NamedTuple):
    """The constants of the per-rating loss (every field a Python int or float for numba).

    Attributes:
        kind: ``LINEAR``, ``SIGMOID`` or ``RBF``.
        offset: ``z₀``, added to the logit (linear, sigmoid).
        a: lowest rating.
        c: rating range (highest − lowest).
        gamma: rbf width ``γ``.
        reg: L2 weight ``λ`` of the factors.
        reg_bias: L2 weight ``λ_b`` of the biases.
    """

    kind: int
    offset: float
    a: float
    c: float
    gamma: float
    reg: float
    reg_bias: float


@_inlined
def predict_one(k: Kernel, bu: float, bi: float, p: Array, q: Array) -> tuple[float, float]:
    """``(r̂, ∂r̂/∂s)`` of one pair: ``s`` is the logit (linear, sigmoid) or ``‖p − q‖²`` (rbf)."""
    if k.kind == RBF:
        d2 = 0.0
        for f in range(p.shape[0]):
            d = p[f] - q[f]
            d2 += d * d
        g = math.exp(-k.gamma * d2)
        return k.a + k.c * g, -k.gamma * k.c * g
    z = k.offset + bu + bi
    for f in range(p.shape[0]):
        z += p[f] * q[f]
    if k.kind == LINEAR:
        return z, 1.0
    s = 1.0 / (1.0 + math.exp(-z))
    return k.a + k.c * s, k.c * s * (1.0 - s)


@_jit
def rating_loss(k: Kernel, r: float, bu: float, bi: float, p: Array, q: Array) -> float:
    """The loss ``L`` of one rating ``r`` (see the module docstring)."""
    pred, _ = predict_one(k, bu, bi, p, q)
    norms = 0.0
    for f in range(p.shape[0]):
        norms += p[f] * p[f] + q[f] * q[f]
    e = pred - r
    return 0.5 * e * e + 0.5 * k.reg_bias * (bu * bu + bi * bi) + 0.5 * k.reg * norms


@_inlined
def rating_gradients(
    k: Kernel, r: float, bu: float, bi: float, p: Array, q: Array, gp: Array, gq: Array
) -> tuple[float, float, float]:
    """Exact gradient of ``L``: writes ``∂L/∂p`` into ``gp`` and ``∂L/∂q`` into ``gq``.

    Returns:
        ``(e, ∂L/∂b_u, ∂L/∂b_i)`` with ``e = r̂ − r``.
    """
    pred, ds = predict_one(k, bu, bi, p, q)
    e = pred - r
    g = e * ds
    if k.kind == RBF:  # ∂‖p − q‖²/∂p = 2 (p − q)
        for f in range(p.shape[0]):
            diff = 2.0 * g * (p[f] - q[f])
            gp[f] = diff + k.reg * p[f]
            gq[f] = -diff + k.reg * q[f]
        return e, k.reg_bias * bu, k.reg_bias * bi
    for f in range(p.shape[0]):
        gp[f] = g * q[f] + k.reg * p[f]
        gq[f] = g * p[f] + k.reg * q[f]
    return e, g + k.reg_bias * bu, g + k.reg_bias * bi


@_jit
def sgd_epoch(
    k: Kernel,
    lr: float,
    users: Array,
    items: Array,
    ratings: Array,
    order: Array,
    bu: Array,
    bi: Array,
    P: Array,
    Q: Array,
) -> float:
    """One SGD pass over the ratings in ``order``, every parameter updated in place.

    Returns:
        The sum of squared errors met during the pass (each before its step).
    """
    gp = np.empty(P.shape[1])
    gq = np.empty(P.shape[1])
    sse = 0.0
    for n in range(order.shape[0]):
        j = order[n]
        u, i = users[j], items[j]
        e, gbu, gbi = rating_gradients(k, ratings[j], bu[u], bi[i], P[u], Q[i], gp, gq)
        sse += e * e
        bu[u] -= lr * gbu
        bi[i] -= lr * gbi
        for f in range(gp.shape[0]):
            P[u, f] -= lr * gp[f]
            Q[i, f] -= lr * gq[f]
    return sse


@_jit
def solve_rows(
    k: Kernel,
    rows_are_users: bool,
    lr: float,
    epochs: int,
    indptr: Array,
    cols: Array,
    ratings: Array,
    other_bias: Array,
    other: Array,
    bias_out: Array,
    out: Array,
) -> None:
    """Fit each CSR row's bias and vector by SGD against the frozen other side.

    Row ``n`` starts from ``bias_out[n]``, ``out[n]`` (callers pass zeros) and visits its
    ratings in stored order ``epochs`` times, so its result depends on its own ratings only.
    With ``rows_are_users`` rows are users and columns items (users-only updates); otherwise
    rows are items and columns users (items-only updates).
    """
    g_row = np.empty(out.shape[1])
    g_other = np.empty(out.shape[1])
    for n in range(indptr.shape[0] - 1):
        b = bias_out[n]
        vec = out[n]
        for _ in range(epochs):
            for m in range(indptr[n], indptr[n + 1]):
                j = cols[m]
                if rows_are_users:
                    _, gb, _ = rating_gradients(
                        k, ratings[m], b, other_bias[j], vec, other[j], g_row, g_other
                    )
                else:
                    _, _, gb = rating_gradients(
                        k, ratings[m], other_bias[j], b, other[j], vec, g_other, g_row
                    )
                b -= lr * gb
                for f in range(g_row.shape[0]):
                    vec[f] -= lr * g_row[f]
        bias_out[n] = b


@_jit
def predict_pairs(
    k: Kernel, mean: float, users: Array, items: Array, bu: Array, bi: Array, P: Array, Q: Array
) -> Array:
    """Unclipped predicted ratings of pairs; ``-1`` marks an unknown user or item.

    A pair with an unknown side is predicted without the interaction term: linear and sigmoid
    with ``p·q = 0`` and the known biases, rbf (which has no biases) as the global ``mean``.
    """
    out = np.empty(users.shape[0])
    for n in range(users.shape[0]):
        u, i = users[n], items[n]
        if u >= 0 and i >= 0:
            out[n], _ = predict_one(k, bu[u], bi[i], P[u], Q[i])
        elif k.kind == RBF:
            out[n] = mean
        else:
            z = k.offset + (bu[u] if u >= 0 else 0.0) + (bi[i] if i >= 0 else 0.0)
            out[n] = z if k.kind == LINEAR else k.a + k.c / (1.0 + math.exp(-z))
    return out


def solve(
    k: Kernel,
    rows: sp.csr_matrix,
    values: np.ndarray,
    rows_are_users: bool,
    lr: float,
    epochs: int,
    other_bias: np.ndarray,
    other: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Bias ``(n,)`` and vectors ``(n, factors)`` of each row of ``rows`` (ratings
    ``values``, in stored order), from zero, by :func:`solve_rows`."""
    bias, out = np.zeros(rows.shape[0]), np.zeros((rows.shape[0], other.shape[1]))
    solve_rows(
        k,
        rows_are_users,
        float(lr),
        epochs,
        rows.indptr.astype(np.int64),
        rows.indices.astype(np.int64),
        values,
        np.ascontiguousarray(other_bias, dtype=np.float64),
        np.ascontiguousarray(other, dtype=np.float64),
        bias,
        out,
    )
    return bias, out


def kernel_constants(params: KernelMFParams, mean: float) -> Kernel:
    """The loss constants of a KernelMF with ``params`` and global mean rating ``mean``."""
    a, c = float(params.min_rating), float(params.max_rating - params.min_rating)
    offset = mean
    if params.kernel == "sigmoid":
        s = min(max((mean - a) / c, 1e-6), 1.0 - 1e-6)
        offset = math.log(s / (1.0 - s))
    gamma = params.gamma if params.gamma is not None else 1.0 / max(params.factors, 1)
    reg_bias = params.reg if params.reg_bias is None else params.reg_bias
    kind = KERNELS[params.kernel]
    return Kernel(kind, offset, a, c, float(gamma), float(params.reg), float(reg_bias))


def ratings_of_scores(k: Kernel, uv: np.ndarray, raw: np.ndarray, factors: int) -> np.ndarray:
    """Index scores ``raw`` ``(n, m)`` of users ``uv`` (factors, then bias) as predicted
    ratings under kernel ``k`` (unclipped; ``-inf`` scores of padded slots give NaN or a
    bound, which callers mask)."""
    f, score = factors, raw.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # -inf on padded slots
        if k.kind == RBF:
            norms = np.sum(uv[:, :f].astype(np.float64) ** 2, axis=1, keepdims=True)
            return np.asarray(k.a + k.c * np.exp(-k.gamma * np.maximum(norms - score, 0.0)))
        z = k.offset + uv[:, f : f + 1].astype(np.float64) + score
        return np.asarray(z if k.kind == LINEAR else k.a + k.c / (1.0 + np.exp(-z)))
