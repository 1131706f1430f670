"""Model hyper-parameter options shared by ``train`` and ``evaluate``.

``train als`` / ``train kmf`` take their own model's options (:func:`als_params`,
:func:`kmf_params`); ``evaluate`` takes both sets (:func:`model_params`) and refuses an option
given for the other model. ``--factors`` belongs to both, with each model's default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar, cast

import click

from streamrec.errors import ConfigError
from streamrec.models.als import ALSParams
from streamrec.models.kernel_mf_params import KERNELS, KernelMFParams

F = TypeVar("F", bound=Callable[..., Any])
_ALS = ALSParams()
_KMF = KernelMFParams()

_ALS_OPTIONS = {
    "regularization": click.option(
        "--regularization",
        type=click.FloatRange(min=0),
        default=_ALS.regularization,
        show_default=True,
        help="ALS L2 weight λ.",
    ),
    "alpha": click.option(
        "--alpha",
        type=click.FloatRange(min=0, min_open=True),
        default=_ALS.alpha,
        show_default=True,
        help="ALS confidence scale of an observed pair.",
    ),
    "iterations": click.option(
        "--iterations",
        type=click.IntRange(min=1),
        default=_ALS.iterations,
        show_default=True,
        help="ALS sweeps.",
    ),
    "confidence": click.option(
        "--confidence",
        type=click.Choice(["binary", "log"]),
        default=_ALS.confidence,
        show_default=True,
        help="ALS transform of raw weights: every pair once, or log1p(weight).",
    ),
}
_KMF_OPTIONS = {
    "kernel": click.option(
        "--kernel",
        type=click.Choice(KERNELS),
        default=_KMF.kernel,
        show_default=True,
        help="KernelMF kernel.",
    ),
    "epochs": click.option(
        "--epochs",
        type=click.IntRange(min=1),
        default=_KMF.epochs,
        show_default=True,
        help="KernelMF SGD passes.",
    ),
    "lr": click.option(
        "--lr",
        type=click.FloatRange(min=0, min_open=True),
        default=_KMF.lr,
        show_default=True,
        help="KernelMF learning rate.",
    ),
    "reg": click.option(
        "--reg",
        type=click.FloatRange(min=0),
        default=_KMF.reg,
        show_default=True,
        help="KernelMF L2 weight of the factors.",
    ),
}


def _factors(default: int | None) -> Callable[[F], F]:
    shown = default if default is not None else f"{_ALS.factors} (als), {_KMF.factors} (kmf)"
    return click.option(
        "--factors",
        type=click.IntRange(min=1),
        default=default,
        show_default=str(shown),
        help="Latent dimensions.",
    )


def _apply(func: Callable[..., Any], options: list[Callable[[Any], Any]]) -> Any:
    for option in reversed(options):
        func = option(func)
    return func


def als_from(values: dict[str, Any]) -> ALSParams:
    """ALSParams from option values (``factors`` None means the default)."""
    return ALSParams(
        factors=values.get("factors") or _ALS.factors,
        regularization=values["regularization"],
        alpha=values["alpha"],
        iterations=values["iterations"],
        confidence="log" if values["confidence"] == "log" else "binary",
    )


def kmf_from(values: dict[str, Any], rating_min: float, rating_max: float) -> KernelMFParams:
    """KernelMFParams from option values on the given rating scale."""
    return replace(
        _KMF,
        min_rating=rating_min,
        max_rating=rating_max,
        factors=values.get("factors") or _KMF.factors,
        kernel=values["kernel"],
        epochs=values["epochs"],
        lr=values["lr"],
        reg=values["reg"],
    )


def als_params(func: F) -> F:
    """Add the ALS options; the command receives them as ``params`` (an ALSParams)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in ("factors", *_ALS_OPTIONS)}
        return func(*args, params=als_from(values), **kwargs)

    return cast(F, _apply(wrapper, [_factors(_ALS.factors), *_ALS_OPTIONS.values()]))


def kmf_params(func: F) -> F:
    """Add the KernelMF options; the command receives their values as ``values`` (a dict,
    turned into KernelMFParams with :func:`kmf_from` once the rating scale is known)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in ("factors", *_KMF_OPTIONS)}
        return func(*args, values=values, **kwargs)

    return cast(F, _apply(wrapper, [_factors(_KMF.factors), *_KMF_OPTIONS.values()]))


def model_params(func: F) -> F:
    """Add both models' options; the command receives ``values`` (a dict of them all).

    :func:`check_options` refuses an option given explicitly for the other model.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        names = ("factors", *_ALS_OPTIONS, *_KMF_OPTIONS)
        values = {name: kwargs.pop(name) for name in names}
        return func(*args, values=values, **kwargs)

    options = [_factors(None), *_ALS_OPTIONS.values(), *_KMF_OPTIONS.values()]
    return cast(F, _apply(wrapper, options))


def check_options(model: str) -> None:
    """Raise ConfigError when an option of the other model was given on the command line."""
    ctx = click.get_current_context()
    other, foreign = ("kmf", _KMF_OPTIONS) if model == "als" else ("als", _ALS_OPTIONS)
    given = [
        f"--{name}"
        for name in foreign
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: only for --model {other} (evaluating --model {model})"
        )
