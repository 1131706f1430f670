"""The one settings object, read from ``STREAMREC_*`` environment variables at the edge.

Library code receives a :class:`Settings` (or a connection) and never reads ``os.environ``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from streamrec import keys
from streamrec.errors import ConfigError

# the text parsers live beside (settings.parsing); these are re-exported here
from streamrec.settings.parsing import check_redis_url as check_redis_url
from streamrec.settings.parsing import every_model
from streamrec.settings.parsing import parse_kind_weights as parse_kind_weights
from streamrec.settings.parsing import parse_per_model as parse_per_model
from streamrec.settings.parsing import per_model as per_model
from streamrec.settings.parsing import redact_url as redact_url

#: Kinds whose weights add up (plays, clicks, ...), with the multiplier applied to each
#: event's weight. ``rating`` is not here: a newer rating replaces an older one.
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"play": 1.0, "click": 1.0, "view": 0.5, "purchase": 4.0}
)
RATING_KIND = "rating"

#: A history value (the sum of an item's additive weights) never grows past this: sums
#: saturate here, so every stored number stays finite in float64 and float32 alike.
MAX_STORED_WEIGHT = 1e15
#: Largest ``max_call_events`` accepted: one apply-script call must stay well under ~50 ms.
MAX_CALL_EVENTS_LIMIT = 5_000
#: Largest producer batch: one RQ job, written to and read from Redis in one command each.
MAX_BATCH_SIZE = 10_000
#: Models that can re-rank another's candidates (``rerank``): the registry's re-rankers
#: (serving/registry.py, whose ``reranks`` field a test keeps equal to this).
RERANKERS: tuple[str, ...] = ("gmf",)
#: Largest ``drain_batches`` (event batches applied together by one job).
MAX_DRAIN_BATCHES = 100


@dataclass(frozen=True)
class Settings:
    """Configuration shared by every streamrec process.

    Attributes:
        redis_url: ``redis://`` / ``rediss://`` URL (ACL user and password allowed); ``None``
            runs the embedded server whose files live under ``home / "redis"``.
        redis_ca_certs: PEM file of the certificate authorities that a ``rediss://`` server's
            certificate must chain to (redis-py's ``ssl_ca_certs``); None: the system's.
        home: folder for the embedded Redis, datasets and model artifacts.
        batch_size: events per producer micro-batch (one RQ job each).
        linger: seconds a non-full micro-batch may wait before it is sent (it adds to every
            event's freshness; longer lingers mean fewer, larger jobs).
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
        max_weight: largest contribution one event may add to a history (``weight`` times
            its kind's multiplier); larger ones are rejected as invalid.
        max_call_events: events applied per apply-script call; a worker splits a larger
            batch into parts, each applied exactly once (bounds how long one call blocks
            Redis).
        socket_timeout: seconds a Redis command may take before a client gives up on it.
        connect_timeout: seconds to wait for a connection to Redis.
        delivery_timeout: seconds the producer keeps retrying a batch Redis does not take
            before :meth:`~streamrec.producer.Producer.flush` gives up.
        max_buffered: events the producer holds unsent (accepted but not yet delivered)
            before ``send`` refuses more.
        worker_ttl: seconds after its last heartbeat that a worker counts as dead (its jobs
            are then handed to other workers).
        reconnect_timeout: seconds a worker keeps reconnecting to a Redis that went away
            before it exits with an error.
        drain_batches: event batches a worker takes from the queue behind the one it runs,
            to apply and serve them together when it falls behind (0 = one at a time).
        event_shards: events queues; the producer sends each user's events to one of them
            (by a hash of the user id), so workers on different shards share no user (see
            ``streamrec worker --processes``).
        retrain_every: seconds between scheduled retrains, per model (``"*"``: any trained
            model not named; a missing entry or 0: never on a clock).
        retrain_after_events: events applied since a model's last publish that make the
            scheduler retrain it, per model like ``retrain_every`` (0: never).
        rebuild_every: seconds between scheduled index rebuilds (items folded in since the
            last publish joined to the model's index), per model like ``retrain_every``.
        scheduler_ttl: seconds the active scheduler's lease lasts unrenewed: a standby
            scheduler takes over within it when the active one dies.
        drift_every: seconds between scheduled drift checks (the served lists of recently
            active users against a fresh retrain's, :mod:`~streamrec.serving.drift`), per
            model like ``retrain_every``, counted from the later of the last check and the
            last publish (default: none, never).
        drift_threshold: mean overlap@k below which a drift check enqueues a retrain
            (0: never; 1: whenever the lists differ at all).
        drift_users: recently active users a scheduled drift check compares.
        rerank: a model that re-ranks the two-tower's candidates in its cached lists
            (``"gmf"``), or None for the two-tower's own order.
        rerank_candidates: two-tower candidates per user the re-ranker orders (≥ ``top_k``).
        rerank_discount: stars of predicted rating a candidate must gain per place it climbs
            in the two-tower's list (0: by predicted rating alone; see
            :mod:`~streamrec.models.rerank`).
        metrics_port: TCP port on which a worker or scheduler serves Prometheus metrics
            (``/metrics``; 0: none).
    """

    redis_url: str | None = None
    redis_ca_certs: Path | None = None
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
    max_weight: float = 1e9
    max_call_events: int = 500
    socket_timeout: float = 10.0
    connect_timeout: float = 5.0
    delivery_timeout: float = 60.0
    max_buffered: int = 100_000
    worker_ttl: int = 30
    reconnect_timeout: float = 300.0
    drain_batches: int = 15
    event_shards: int = 1
    retrain_every: Mapping[str, float] = field(default_factory=lambda: every_model(86_400.0))
    retrain_after_events: Mapping[str, float] = field(default_factory=lambda: every_model(100_000))
    rebuild_every: Mapping[str, float] = field(default_factory=lambda: every_model(3_600.0))
    scheduler_ttl: float = 10.0
    drift_every: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    drift_threshold: float = 0.5
    drift_users: int = 200
    rerank: str | None = None
    rerank_candidates: int = 100
    rerank_discount: float = 0.25
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(
                f"batch_size must be between 1 and {MAX_BATCH_SIZE} (got {self.batch_size!r})"
            )
        if not (self.linger >= 0 and math.isfinite(self.linger)):
            raise ConfigError(f"linger must be a finite number ≥ 0 seconds (got {self.linger!r})")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be ≥ 1 (got {self.top_k!r})")
        if self.mirror_users < 0:
            raise ConfigError(f"mirror_users must be ≥ 0 (got {self.mirror_users!r})")
        if self.models_kept < 1:
            raise ConfigError(f"models_kept must be ≥ 1 (got {self.models_kept!r})")
        if not 1 <= self.max_call_events <= MAX_CALL_EVENTS_LIMIT:
            raise ConfigError(
                f"max_call_events must be between 1 and {MAX_CALL_EVENTS_LIMIT} "
                f"(got {self.max_call_events!r})"
            )
        for name in ("socket_timeout", "connect_timeout", "delivery_timeout", "reconnect_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number of seconds > 0 (got {value!r})")
        if not 0 <= self.drain_batches <= MAX_DRAIN_BATCHES:
            raise ConfigError(
                f"drain_batches must be between 0 and {MAX_DRAIN_BATCHES} "
                f"(got {self.drain_batches!r})"
            )
        if not 1 <= self.event_shards <= keys.MAX_EVENT_SHARDS:
            raise ConfigError(
                f"event_shards must be between 1 and {keys.MAX_EVENT_SHARDS} "
                f"(got {self.event_shards!r})"
            )
        for name in _PER_MODEL.values():
            for model, value in getattr(self, name).items():
                if not (math.isfinite(value) and value >= 0):
                    raise ConfigError(f"{name} of {model} must be a number ≥ 0 (got {value!r})")
        if not (math.isfinite(self.scheduler_ttl) and self.scheduler_ttl >= 1):
            raise ConfigError(f"scheduler_ttl must be ≥ 1 second (got {self.scheduler_ttl!r})")
        if not 0 <= self.drift_threshold <= 1:
            raise ConfigError(
                f"drift_threshold must be between 0 and 1 (got {self.drift_threshold!r})"
            )
        if self.drift_users < 1:
            raise ConfigError(f"drift_users must be ≥ 1 (got {self.drift_users!r})")
        if self.max_buffered < 1:
            raise ConfigError(f"max_buffered must be ≥ 1 (got {self.max_buffered!r})")
        if self.worker_ttl < 5:
            raise ConfigError(f"worker_ttl must be ≥ 5 seconds (got {self.worker_ttl!r})")
        if not (math.isfinite(self.max_weight) and 0 < self.max_weight <= MAX_STORED_WEIGHT):
            raise ConfigError(
                f"max_weight must be a number > 0 and ≤ {MAX_STORED_WEIGHT:g} "
                f"(got {self.max_weight!r})"
            )
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
        for value in (self.rating_min, self.rating_max):
            if not math.isfinite(value):
                raise ConfigError(f"the rating scale must be finite (got {value!r})")
        self._check_rerank()
        if not 0 <= self.metrics_port <= 65_535:
            raise ConfigError(f"metrics_port must be 0 (none) to 65535 (got {self.metrics_port!r})")

    def _check_rerank(self) -> None:
        if self.rerank is not None and self.rerank not in RERANKERS:
            raise ConfigError(
                f"rerank must be one of {', '.join(RERANKERS)} or unset (got {self.rerank!r})"
            )
        if self.rerank_candidates < 1:
            raise ConfigError(f"rerank_candidates must be ≥ 1 (got {self.rerank_candidates!r})")
        if self.rerank is not None and self.rerank_candidates < self.top_k:
            raise ConfigError(
                f"rerank_candidates must be ≥ top_k ({self.top_k}) when rerank is set "
                f"(got {self.rerank_candidates!r})"
            )
        if not (math.isfinite(self.rerank_discount) and self.rerank_discount >= 0):
            raise ConfigError(
                f"rerank_discount must be a finite number ≥ 0 (got {self.rerank_discount!r})"
            )

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
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from the ``STREAMREC_*`` variables of ``env`` (an app passes
        ``os.environ`` at its edge; library code never reads it).

        Variables: ``STREAMREC_REDIS_URL``, ``STREAMREC_REDIS_CA_CERTS``, ``STREAMREC_HOME``,
        ``STREAMREC_BATCH_SIZE``, ``STREAMREC_LINGER``,
        ``STREAMREC_KIND_WEIGHTS`` (``play=1,click=0.5``),
        ``STREAMREC_RATING_MIN``, ``STREAMREC_RATING_MAX``, ``STREAMREC_JOB_RETRIES``,
        ``STREAMREC_JOB_TIMEOUT``, ``STREAMREC_DEAD_LETTER_LIMIT``, ``STREAMREC_MODELS_KEPT``,
        ``STREAMREC_TOP_K``, ``STREAMREC_MIRROR_USERS``, ``STREAMREC_MAX_WEIGHT``,
        ``STREAMREC_MAX_CALL_EVENTS``, ``STREAMREC_SOCKET_TIMEOUT``,
        ``STREAMREC_CONNECT_TIMEOUT``, ``STREAMREC_DELIVERY_TIMEOUT``,
        ``STREAMREC_MAX_BUFFERED``, ``STREAMREC_WORKER_TTL``, ``STREAMREC_RECONNECT_TIMEOUT``,
        ``STREAMREC_RERANK`` (empty: none), ``STREAMREC_RERANK_CANDIDATES``,
        ``STREAMREC_RERANK_DISCOUNT``, ``STREAMREC_DRAIN_BATCHES``,
        ``STREAMREC_RETRAIN_EVERY`` / ``STREAMREC_RETRAIN_AFTER_EVENTS`` /
        ``STREAMREC_REBUILD_EVERY`` (``3600``, ``als=600,*=3600`` or ``-``),
        ``STREAMREC_SCHEDULER_TTL``, ``STREAMREC_DRIFT_EVERY`` (per model, like
        ``STREAMREC_RETRAIN_EVERY``; unset: never), ``STREAMREC_DRIFT_THRESHOLD``,
        ``STREAMREC_DRIFT_USERS``, ``STREAMREC_METRICS_PORT`` (0: none).
        """
        kw: dict[str, Any] = {}
        url = env.get("STREAMREC_REDIS_URL", "").strip()
        if url:
            kw["redis_url"] = check_redis_url(url)
        if env.get("STREAMREC_REDIS_CA_CERTS", "").strip():
            kw["redis_ca_certs"] = Path(env["STREAMREC_REDIS_CA_CERTS"].strip()).expanduser()
        if env.get("STREAMREC_HOME"):
            kw["home"] = Path(env["STREAMREC_HOME"]).expanduser()
        for var, (name, kind) in _NUMBERS.items():
            if env.get(var):
                try:
                    kw[name] = kind(env[var])
                except ValueError:
                    raise ConfigError(
                        f"{var} must be a {kind.__name__} (got {env[var]!r})"
                    ) from None
        for var, name in _PER_MODEL.items():
            if env.get(var, "").strip():
                kw[name] = MappingProxyType(parse_per_model(var, env[var]))
        if env.get("STREAMREC_KIND_WEIGHTS"):
            kw["kind_weights"] = MappingProxyType(parse_kind_weights(env["STREAMREC_KIND_WEIGHTS"]))
        if env.get("STREAMREC_RERANK", "").strip():
            kw["rerank"] = env["STREAMREC_RERANK"].strip()
        return cls(**kw)

    def child_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """An environment for a child process: ``base`` (say ``os.environ``: PATH and the
        like) without its ``STREAMREC_*`` variables, then :meth:`to_env` — the child gets
        exactly these settings, not the ones ``base`` would give."""
        env = {k: v for k, v in base.items() if not k.startswith("STREAMREC_")}
        return {**env, **self.to_env()}

    def to_env(self) -> dict[str, str]:
        """The ``STREAMREC_*`` variables that rebuild these settings in another process (a
        worker's children get the parent's settings, flags included)."""
        env = {var: repr(getattr(self, name)) for var, (name, _) in _NUMBERS.items()}
        env["STREAMREC_HOME"] = str(self.home)
        env["STREAMREC_KIND_WEIGHTS"] = ",".join(f"{k}={w!r}" for k, w in self.kind_weights.items())
        for var, name in _PER_MODEL.items():
            env[var] = ",".join(f"{k}={v!r}" for k, v in getattr(self, name).items()) or "-"
        if self.redis_url:
            env["STREAMREC_REDIS_URL"] = self.redis_url
        if self.redis_ca_certs is not None:
            env["STREAMREC_REDIS_CA_CERTS"] = str(self.redis_ca_certs)
        if self.rerank is not None:
            env["STREAMREC_RERANK"] = self.rerank
        return env


#: Numeric settings by variable: (field, type).
_NUMBERS: dict[str, tuple[str, type]] = {
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
    "STREAMREC_MAX_WEIGHT": ("max_weight", float),
    "STREAMREC_MAX_CALL_EVENTS": ("max_call_events", int),
    "STREAMREC_SOCKET_TIMEOUT": ("socket_timeout", float),
    "STREAMREC_CONNECT_TIMEOUT": ("connect_timeout", float),
    "STREAMREC_DELIVERY_TIMEOUT": ("delivery_timeout", float),
    "STREAMREC_MAX_BUFFERED": ("max_buffered", int),
    "STREAMREC_WORKER_TTL": ("worker_ttl", int),
    "STREAMREC_RECONNECT_TIMEOUT": ("reconnect_timeout", float),
    "STREAMREC_DRAIN_BATCHES": ("drain_batches", int),
    "STREAMREC_EVENT_SHARDS": ("event_shards", int),
    "STREAMREC_SCHEDULER_TTL": ("scheduler_ttl", float),
    "STREAMREC_DRIFT_THRESHOLD": ("drift_threshold", float),
    "STREAMREC_DRIFT_USERS": ("drift_users", int),
    "STREAMREC_RERANK_CANDIDATES": ("rerank_candidates", int),
    "STREAMREC_RERANK_DISCOUNT": ("rerank_discount", float),
    "STREAMREC_METRICS_PORT": ("metrics_port", int),
}


#: Per-model settings by variable: field.
_PER_MODEL: dict[str, str] = {
    "STREAMREC_RETRAIN_EVERY": "retrain_every",
    "STREAMREC_RETRAIN_AFTER_EVENTS": "retrain_after_events",
    "STREAMREC_REBUILD_EVERY": "rebuild_every",
    "STREAMREC_DRIFT_EVERY": "drift_every",
}
