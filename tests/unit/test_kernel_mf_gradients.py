"""The SGD gradients of every kernel against central finite differences of the per-rating
loss, with the very functions the SGD loops call (``sgd.rating_gradients``, ``sgd.rating_loss``)."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models import sgd

FACTORS, POINTS, STEP = 5, 6, 1e-6


def kernel(kind: str, rng: np.random.Generator) -> sgd.Kernel:
    return sgd.Kernel(
        kind=sgd.KERNELS[kind],
        offset=float(rng.normal(0.5, 0.5)),
        a=1.0,
        c=4.0,
        gamma=0.3,
        reg=0.05,
        reg_bias=0.02,
    )


def numeric_gradient(k: sgd.Kernel, r: float, theta: np.ndarray) -> np.ndarray:
    """Central differences of the loss in ``theta = [b_u, b_i, p, q]``."""

    def loss(t: np.ndarray) -> float:
        p, q = t[2 : 2 + FACTORS].copy(), t[2 + FACTORS :].copy()
        return float(sgd.rating_loss(k, r, t[0], t[1], p, q))

    grad = np.empty_like(theta)
    for j in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[j] += STEP
        down[j] -= STEP
        grad[j] = (loss(up) - loss(down)) / (2 * STEP)
    return grad


@pytest.mark.parametrize("kind", sorted(sgd.KERNELS))
def test_gradients_match_finite_differences(kind: str) -> None:
    rng = np.random.default_rng(sgd.KERNELS[kind])
    for _ in range(POINTS):
        k = kernel(kind, rng)
        theta = rng.normal(0.0, 0.4, 2 + 2 * FACTORS)
        r = float(rng.uniform(1.0, 5.0))
        gp, gq = np.empty(FACTORS), np.empty(FACTORS)
        p, q = theta[2 : 2 + FACTORS].copy(), theta[2 + FACTORS :].copy()
        _, gbu, gbi = sgd.rating_gradients(k, r, theta[0], theta[1], p, q, gp, gq)
        analytic = np.concatenate([[gbu, gbi], gp, gq])
        np.testing.assert_allclose(analytic, numeric_gradient(k, r, theta), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", sorted(sgd.KERNELS))
def test_an_sgd_step_moves_every_parameter_against_that_gradient(kind: str) -> None:
    rng = np.random.default_rng(10 + sgd.KERNELS[kind])
    k = kernel(kind, rng)
    bu, bi = rng.normal(0, 0.3, 2), rng.normal(0, 0.3, 3)
    P, Q = rng.normal(0, 0.3, (2, FACTORS)), rng.normal(0, 0.3, (3, FACTORS))
    gp, gq = np.empty(FACTORS), np.empty(FACTORS)
    e, gbu, gbi = sgd.rating_gradients(k, 4.0, bu[1], bi[2], P[1].copy(), Q[2].copy(), gp, gq)
    expected = (bu[1] - 0.1 * gbu, bi[2] - 0.1 * gbi, P[1] - 0.1 * gp, Q[2] - 0.1 * gq)
    one = np.array([0])
    sse = sgd.sgd_epoch(k, 0.1, np.array([1]), np.array([2]), np.array([4.0]), one, bu, bi, P, Q)
    assert sse == pytest.approx(e * e)
    for got, want in zip((bu[1], bi[2], P[1], Q[2]), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_sigmoid_gradient_carries_the_rating_range() -> None:
    """The reference omits c in ∂r̂; with c = 4 its gradient would be 4x too small."""
    k = sgd.Kernel(sgd.SIGMOID, 0.0, 1.0, 4.0, 0.1, 0.0, 0.0)
    zero = np.zeros(FACTORS)
    gp, gq = np.empty(FACTORS), np.empty(FACTORS)
    e, gbu, _ = sgd.rating_gradients(k, 5.0, 0.0, 0.0, zero, zero, gp, gq)
    assert e == pytest.approx(-2.0)  # r̂ = 1 + 4 σ(0) = 3
    assert gbu == pytest.approx(e * 4.0 * 0.25)
