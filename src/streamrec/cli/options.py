"""Options shared by several commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from streamrec.models.als import ALSParams

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = ALSParams()


def als_params(func: F) -> F:
    """Add the ALS hyper-parameter options; the command receives them as ``params``."""

    @click.option(
        "--factors",
        type=click.IntRange(min=1),
        default=_DEFAULTS.factors,
        show_default=True,
        help="ALS latent dimensions.",
    )
    @click.option(
        "--regularization",
        type=click.FloatRange(min=0),
        default=_DEFAULTS.regularization,
        show_default=True,
        help="ALS L2 weight λ.",
    )
    @click.option(
        "--alpha",
        type=click.FloatRange(min=0, min_open=True),
        default=_DEFAULTS.alpha,
        show_default=True,
        help="Confidence scale of an observed pair.",
    )
    @click.option(
        "--iterations",
        type=click.IntRange(min=1),
        default=_DEFAULTS.iterations,
        show_default=True,
        help="ALS sweeps.",
    )
    @click.option(
        "--confidence",
        type=click.Choice(["binary", "log"]),
        default=_DEFAULTS.confidence,
        show_default=True,
        help="Transform of raw weights: every pair once, or log1p(weight).",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        factors: int,
        regularization: float,
        alpha: float,
        iterations: int,
        confidence: str,
        **kwargs: Any,
    ) -> Any:
        params = ALSParams(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            confidence="log" if confidence == "log" else "binary",
        )
        return func(*args, params=params, **kwargs)

    return wrapper  # type: ignore[return-value]
