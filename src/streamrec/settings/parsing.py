"""Setting values given as text: Redis URLs, per-model values and event-kind weights."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from streamrec.errors import ConfigError


def check_redis_url(url: str) -> str:
    """``url`` if it names a Redis server; a :class:`ConfigError` (password hidden) if not."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "STREAMREC_REDIS_URL must start with redis://, rediss:// or unix:// "
            f"(got {redact_url(url)!r})"
        )
    return url


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = credentials.partition(":")
    hidden = f"{user}:***" if colon else "***"
    return f"{scheme}{sep}{hidden}@{host}"


def every_model(value: float) -> Mapping[str, float]:
    """A per-model setting with one ``value`` for every model."""
    return MappingProxyType({"*": value})


def parse_per_model(var: str, text: str) -> dict[str, float]:
    """Parse a per-model setting: ``"3600"`` (every model), ``"als=600,*=3600"``, or ``"-"``
    (none)."""
    if text.strip() == "-":
        return {}
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.rpartition("=")
        try:
            values[name.strip() if sep else "*"] = float(value)
            if sep and not name.strip():
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"{var} entries must look like model=number or number (got {part!r})"
            ) from None
    return values


def per_model(values: Mapping[str, float], model: str) -> float:
    """A per-model setting's value for ``model`` (its own, else ``"*"``'s, else 0)."""
    return float(values.get(model, values.get("*", 0.0)))


def parse_kind_weights(text: str) -> dict[str, float]:
    """Parse ``"play=1,click=0.5"`` into ``{"play": 1.0, "click": 0.5}``."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"STREAMREC_KIND_WEIGHTS entries must look like kind=weight (got {part!r})"
            ) from None
    return weights
