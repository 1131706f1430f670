"""Hyper-parameters of :class:`~streamrec.models.gmf.GMF` and its trainer, checked on creation.

Kept apart from the model so that the CLI can show and build them without numpy-heavy
imports, like :mod:`~streamrec.models.kernel_mf_params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamrec.errors import ConfigError
from streamrec.models.index.scann_params import EXACT_BELOW


@dataclass(frozen=True)
class GMFParams:
    """Hyper-parameters of :class:`~streamrec.models.gmf.GMF`.

    Size, optimiser and biases' L2 follow the issue's prototype; ``reg`` was tuned on a
    validation split carved out of the training part of ML-100K's ``random_split(data, 0.2,
    seed=42)`` (test figures in :mod:`streamrec.models.gmf_train`). The L2 terms are per
    training example (per rating), averaged over the batch with the squared error, so a
    user's total penalty grows with their rating count, as the fold-in's does.

    Attributes:
        factors: embedding dimensions ``d``.
        epochs: passes over the ratings.
        batch_size: ratings per Adam step.
        lr: Adam learning rate.
        reg: per-rating L2 weight of the user and item embeddings.
        reg_bias: per-rating L2 weight of the user and item biases (also the fold-in's).
        fold_in_reg: per-rating ridge weight ``λ`` of ``p_u`` (and ``q_i``) in fold-in;
            ``None`` means ``reg``, the training objective's own. Half of ``reg`` folds new
            users in closer to training with them (ML-100K new-users splits of seeds 1–3:
            RMSE ratios 1.001–1.010 against 1.003–1.011 with ``reg``).
        init_sd: standard deviation of the normal initial embeddings.
        min_rating: lowest valid rating.
        max_rating: highest valid rating.
        seed: seed of the initial weights and of the shuffles.
        exact_below: catalogues of fewer items are searched exactly; larger ones through a
            ScaNN index (:func:`~streamrec.models.index.build_index`).
    """

    factors: int = 32
    epochs: int = 20
    batch_size: int = 512
    lr: float = 3e-3
    reg: float = 0.04
    reg_bias: float = 0.003
    fold_in_reg: float | None = 0.02
    init_sd: float = 0.05
    min_rating: float = 0.5
    max_rating: float = 5.0
    seed: int = 42
    exact_below: int = EXACT_BELOW

    def __post_init__(self) -> None:
        for name in ("factors", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer ≥ 1 (got {value!r})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer (got {self.seed!r})")
        _number("lr", self.lr, above=0.0)
        for name in ("reg", "reg_bias", "init_sd"):
            _number(name, getattr(self, name), at_least=0.0)
        if self.fold_in_reg is not None:
            _number("fold_in_reg", self.fold_in_reg, above=0.0)
        elif self.reg <= 0:
            raise ConfigError(
                "fold_in_reg must be given (> 0) when reg is 0: the fold-in ridge needs a "
                f"penalty (got reg {self.reg!r})"
            )
        _number("min_rating", self.min_rating)
        _number("max_rating", self.max_rating)
        if not self.min_rating < self.max_rating:
            raise ConfigError(
                f"min_rating must be below max_rating (got {self.min_rating} and {self.max_rating})"
            )

    @property
    def fold_in_penalty(self) -> float:
        """The per-rating ridge weight of the factors in fold-in (``fold_in_reg`` or ``reg``)."""
        return self.reg if self.fold_in_reg is None else self.fold_in_reg


def _number(
    name: str, value: object, above: float | None = None, at_least: float | None = None
) -> None:
    """Refuse a value that is not a finite real number (``> above``, ``≥ at_least``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number (got {value!r})")
    if above is not None and not value > above:
        raise ConfigError(f"{name} must be > {above:g} (got {value!r})")
    if at_least is not None and not value >= at_least:
        raise ConfigError(f"{name} must be ≥ {at_least:g} (got {value!r})")
