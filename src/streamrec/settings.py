"""The one settings object, read from ``STREAMREC_*`` environment variables at the edge.

Library code receives a :class:`Settings` (or a connection) and never reads ``os.environ``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from streamrec.errors import ConfigError

#: Kinds whose weights add up (plays, clicks, ...), with the multiplier applied to each
#: event's weight. ``rating`` is not here: a newer rating replaces an older one.
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"play": 1.0, "click": 1.0, "view": 0.5, "purchase": 4.0}
)
RATING_KIND = "rating"


@dataclass(frozen=True)
class Settings:
    """Configuration shared by every streamrec process.

    Attributes:
        redis_url: ``redis://`` / ``rediss://`` URL (ACL user and password allowed); ``None``
            runs the embedded server whose files live under ``home / "redis"``.
        home: folder for the embedded Redis, datasets and model artifacts.
        batch_size: events per producer micro-batch (one RQ job each).
        linger: seconds a non-full micro-batch may wait before it is sent (it adds to every
            event's freshness; 20 ms keeps one worker at 2,000 events/s under 50 ms p50).
        kind_weights: additive event kinds and the multiplier applied to their weight.
        rating_min: lowest valid rating.
        rating_max: highest valid rating.
        max_future_skew: seconds an event timestamp may lie ahead of the clock.
        ledger_retention: seconds an applied batch id is remembered (redelivery window).
        dead_letter_limit: newest dead letters kept.
        job_retries: times RQ retries a failed or abandoned ``apply_events`` job.
        job_timeout: seconds an ``apply_events`` job may run.
        models_kept: versions of each model kept on disk.
        top_k: items in each cached list.
        mirror_users: users whose histories a worker keeps in memory to fold them in
            without reading them back (about 10 kB per user of 100 items; 0 = read always).
    """

    redis_url: str | None = None
    home: Path = field(default_factory=lambda: Path.home() / ".streamrec")
    batch_size: int = 500
    linger: float = 0.02
    kind_weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_KIND_WEIGHTS)
    rating_min: float = 0.5
    rating_max: float = 5.0
    max_future_skew: float = 86_400.0
    ledger_retention: float = 7 * 86_400.0
    dead_letter_limit: int = 100_000
    job_retries: int = 5
    job_timeout: int = 600
    models_kept: int = 3
    top_k: int = 20
    mirror_users: int = 10_000

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1 (got {self.batch_size!r})")
        if not (self.linger >= 0 and math.isfinite(self.linger)):
            raise ConfigError(f"linger must be a finite number ≥ 0 seconds (got {self.linger!r})")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be ≥ 1 (got {self.top_k!r})")
        if self.mirror_users < 0:
            raise ConfigError(f"mirror_users must be ≥ 0 (got {self.mirror_users!r})")
        if self.models_kept < 1:
            raise ConfigError(f"models_kept must be ≥ 1 (got {self.models_kept!r})")
        if not self.rating_min < self.rating_max:
            raise ConfigError(
                f"rating_min must be below rating_max (got {self.rating_min!r} and "
                f"{self.rating_max!r})"
            )
        if RATING_KIND in self.kind_weights:
            raise ConfigError("kind 'rating' is built in and cannot be given a weight")
        for kind, weight in self.kind_weights.items():
            if not (math.isfinite(weight) and weight > 0):
                raise ConfigError(f"weight of kind {kind!r} must be a number > 0 (got {weight!r})")

    @property
    def kinds(self) -> frozenset[str]:
        """Every accepted event kind."""
        return frozenset(self.kind_weights) | {RATING_KIND}

    @property
    def redis_dir(self) -> Path:
        """Folder of the embedded Redis server (data, socket, pid file)."""
        return self.home / "redis"

    @property
    def datasets_dir(self) -> Path:
        """Folder where fetched datasets are unpacked."""
        return self.home / "datasets"

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``STREAMREC_*`` variables (``os.environ`` when ``env`` is None).

        Variables: ``STREAMREC_REDIS_URL``, ``STREAMREC_HOME``, ``STREAMREC_BATCH_SIZE``,
        ``STREAMREC_LINGER``, ``STREAMREC_KIND_WEIGHTS`` (``play=1,click=0.5``),
        ``STREAMREC_RATING_MIN``, ``STREAMREC_RATING_MAX``, ``STREAMREC_JOB_RETRIES``,
        ``STREAMREC_JOB_TIMEOUT``, ``STREAMREC_DEAD_LETTER_LIMIT``, ``STREAMREC_MODELS_KEPT``,
        ``STREAMREC_TOP_K``, ``STREAMREC_MIRROR_USERS``.
        """
        env = os.environ if env is None else env
        kw: dict[str, Any] = {}
        url = env.get("STREAMREC_REDIS_URL", "").strip()
        if url:
            if not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(
                    f"STREAMREC_REDIS_URL must start with redis://, rediss:// or unix:// "
                    f"(got {url!r})"
                )
            kw["redis_url"] = url
        if env.get("STREAMREC_HOME"):
            kw["home"] = Path(env["STREAMREC_HOME"]).expanduser()
        numbers: dict[str, tuple[str, type]] = {
            "STREAMREC_BATCH_SIZE": ("batch_size", int),
            "STREAMREC_LINGER": ("linger", float),
            "STREAMREC_RATING_MIN": ("rating_min", float),
            "STREAMREC_RATING_MAX": ("rating_max", float),
            "STREAMREC_JOB_RETRIES": ("job_retries", int),
            "STREAMREC_JOB_TIMEOUT": ("job_timeout", int),
            "STREAMREC_DEAD_LETTER_LIMIT": ("dead_letter_limit", int),
            "STREAMREC_MODELS_KEPT": ("models_kept", int),
            "STREAMREC_TOP_K": ("top_k", int),
            "STREAMREC_MIRROR_USERS": ("mirror_users", int),
        }
        for var, (name, kind) in numbers.items():
            if env.get(var):
                try:
                    kw[name] = kind(env[var])
                except ValueError:
                    raise ConfigError(
                        f"{var} must be a {kind.__name__} (got {env[var]!r})"
                    ) from None
        if env.get("STREAMREC_KIND_WEIGHTS"):
            kw["kind_weights"] = MappingProxyType(parse_kind_weights(env["STREAMREC_KIND_WEIGHTS"]))
        return cls(**kw)


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
