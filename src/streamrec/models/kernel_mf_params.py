"""Hyper-parameters of :class:`~streamrec.models.kernel_mf.KernelMF` and the rating check.

Kept apart from the model so that the CLI can show the defaults and build parameters
without importing numba (:mod:`streamrec.models.sgd`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from streamrec.errors import ConfigError, InvalidRatingError
from streamrec.models.index.scann_params import EXACT_BELOW

KernelName = Literal["linear", "sigmoid", "rbf"]
KERNELS: tuple[KernelName, ...] = ("linear", "sigmoid", "rbf")


@dataclass(frozen=True)
class KernelMFParams:
    """Hyper-parameters of :class:`KernelMF`.

    The defaults were tuned on ML-100K with a validation split carved out of the training
    part of ``random_split(data, 0.2, seed=42)`` (see bench/kernel_mf.py for test figures):
    a small initialisation, a decaying learning rate (which also stops the factors from
    overfitting) and one ``reg`` for factors and biases.

    Attributes:
        factors: latent dimensions.
        epochs: SGD passes of ``fit``.
        kernel: ``linear``, ``sigmoid`` or ``rbf``.
        gamma: rbf width; ``None`` means ``1 / factors``.
        lr: learning rate of the first epoch.
        lr_decay: the learning rate is multiplied by this after every epoch.
        reg: L2 weight of the factors, per rating step.
        reg_bias: L2 weight of the biases; ``None`` means ``reg``.
        init_sd: standard deviation of the normal initial factors.
        min_rating: lowest valid rating (``a``).
        max_rating: highest valid rating (``a + c``).
        update_epochs: SGD passes over each row when folding users or items in.
        update_lr: learning rate of fold-in.
        seed: seed of the initial factors and of the per-epoch shuffles.
        exact_below: catalogues of fewer items are searched exactly; larger ones through a
            ScaNN index (:func:`~streamrec.models.index.build_index`).
    """

    factors: int = 100
    epochs: int = 60
    kernel: KernelName = "linear"
    gamma: float | None = None
    lr: float = 0.01
    lr_decay: float = 0.98
    reg: float = 0.08
    reg_bias: float | None = None
    init_sd: float = 0.02
    min_rating: float = 0.5
    max_rating: float = 5.0
    update_epochs: int = 20
    update_lr: float = 0.01
    seed: int = 42
    exact_below: int = EXACT_BELOW

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(KERNELS)} (got {self.kernel!r})")
        if not self.min_rating < self.max_rating:
            raise ConfigError(
                f"min_rating must be below max_rating (got {self.min_rating} and {self.max_rating})"
            )


def trained_mask(ids: np.ndarray, bias: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Bool mask: the id is in range and its row was trained (a bias or a factor ≠ 0)."""
    ok = (ids >= 0) & (ids < len(bias))
    if len(bias):
        safe = np.where(ok, ids, 0)
        ok &= (bias[safe] != 0) | np.any(factors[safe] != 0, axis=1)
    return np.asarray(ok)


def check_width(vectors: np.ndarray, factors: int, name: str) -> np.ndarray:
    """``vectors`` if they are ``(n, factors + 1)`` (factors and a bias), else ValueError."""
    if vectors.ndim != 2 or vectors.shape[1] != factors + 1:
        raise ValueError(f"{name} must have shape (n, {factors + 1}) (got {vectors.shape})")
    return vectors


def check_ratings(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` as float64 after checking that every one is a finite number in ``[lo, hi]``.

    Raises:
        InvalidRatingError: naming the first offending value and how many there are.
    """
    v = np.asarray(values, dtype=np.float64)
    bad = ~((v >= lo) & (v <= hi))  # NaN compares False
    if bad.any():
        raise InvalidRatingError(
            "ratings",
            float(v[np.argmax(bad)]),
            f"must be finite numbers in [{lo:g}, {hi:g}]: {int(bad.sum())} of {v.size} "
            "stored entries are not (fix the data, or min_rating/max_rating in the params)",
        )
    return v
