"""Model hyper-parameter options, built from the model registry.

``train <model>`` takes its model's options (:func:`params_of`); ``evaluate`` takes every
model's (:func:`all_params`) and refuses an option given for another model than the one
evaluated (:func:`check_options`). An option several models share (``--factors``) shows
each model's default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any, TypeVar, cast

import click

from streamrec.errors import ConfigError
from streamrec.serving.registry import REGISTRY, ModelSpec, Option

F = TypeVar("F", bound=Callable[..., Any])


def _default(model: ModelSpec, name: str) -> Any:
    return {f.name: f.default for f in fields(model.params)}[name]


def _click_type(option: Option) -> click.ParamType[Any]:
    if isinstance(option.kind, tuple):
        return click.Choice(option.kind)
    if option.kind is int:
        low = None if option.low is None else int(option.low) + int(option.low_open)
        return click.IntRange(min=low)
    return click.FloatRange(min=option.low, min_open=option.low_open)


def _click_option(option: Option, models: list[ModelSpec], shared: bool) -> Callable[[F], F]:
    """The click option; in a command ``shared`` by several models its default is None (the
    evaluated model's own default applies) and the help names the models that take it."""
    defaults = {m.name: _default(m, option.name) for m in models}
    if not shared:
        return click.option(
            "--" + option.name.replace("_", "-"),
            option.name,
            type=_click_type(option),
            default=defaults[models[0].name],
            show_default=True,
            help=option.help,
        )
    shown = ", ".join(f"{name}: {value}" for name, value in defaults.items())
    return click.option(
        "--" + option.name.replace("_", "-"),
        option.name,
        type=_click_type(option),
        default=None,
        show_default=shown,
        help=f"{option.help} Only --model {' or '.join(defaults)}.",
    )


def _owners(models: Iterable[ModelSpec]) -> dict[str, tuple[Option, list[ModelSpec]]]:
    owners: dict[str, tuple[Option, list[ModelSpec]]] = {}
    for model in models:
        for option in model.options:
            owners.setdefault(option.name, (option, []))[1].append(model)
    return owners


def _with_options(func: F, owners: dict[str, tuple[Option, list[ModelSpec]]], shared: bool) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in owners}
        return func(*args, values=values, **kwargs)

    wrapped: Any = wrapper
    for option, models in reversed(list(owners.values())):
        wrapped = _click_option(option, models, shared)(wrapped)
    return cast(F, wrapped)


def params_of(model: ModelSpec) -> Callable[[F], F]:
    """Add ``model``'s options; the command receives their values as ``values`` (a dict,
    turned into params by :meth:`ModelSpec.make_params` once the settings are known)."""
    return lambda func: _with_options(func, _owners([model]), shared=False)


def all_params(func: F) -> F:
    """Add every model's options; the command receives ``values`` (None where not given)."""
    return _with_options(func, _owners(REGISTRY.values()), shared=True)


def check_options(model: ModelSpec) -> None:
    """Raise ConfigError when an option that ``model`` does not take was given."""
    ctx = click.get_current_context()
    mine = {option.name for option in model.options}
    owners = _owners(REGISTRY.values())
    given = [
        name
        for name in owners
        if name not in mine
        and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        others = sorted({m.name for name in given for m in owners[name][1]})
        raise ConfigError(
            f"{flags}: only for --model {' or '.join(others)} (evaluating --model {model.name})"
        )
