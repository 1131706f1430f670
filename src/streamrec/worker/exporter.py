"""The ``/metrics`` endpoint of a worker or the scheduler (``STREAMREC_METRICS_PORT``).

It serves the series recorded in-process (:mod:`streamrec.metrics`) — of this process, or,
for ``streamrec worker -n N``, of every child through ``prometheus_client``'s multiprocess
mode (the entry point gives the folder) — and gauges read from Redis at scrape time
(:class:`StateCollector`), so they cost nothing between scrapes:

=====================================  ==========  ==========================================
series                                 labels      what
=====================================  ==========  ==========================================
``streamrec_queue_depth``              ``queue``   jobs waiting in the queue
``streamrec_queue_oldest_seconds``     ``queue``   age of the oldest waiting job (0: none)
``streamrec_dead_letters``             —           entries in the dead-letter list
``streamrec_quarantined``              —           queue entries set aside unrun
``streamrec_unserved_batches``         —           applied batches whose users wait to be served
``streamrec_model_version``            ``model``   published version (trained models only)
``streamrec_model_age_seconds``        ``model``   seconds since its last publish
``streamrec_redis_up``                 —           1 when the scrape could read Redis
=====================================  ==========  ==========================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from streamrec import keys
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from streamrec.state.registry import ModelRegistry
from streamrec.state.stats import read_counts
from streamrec.worker.status import queue_lag

logger = logging.getLogger(__name__)


class StateCollector:
    """Gauges of the queues, dead letters and models, read from Redis at each scrape.

    Args:
        connection: a redis-py client (used from the HTTP server's thread).
        settings: the model registry's home and the event shards.
        models: the models whose versions are reported.
    """

    def __init__(self, connection: redis.Redis, settings: Settings, models: Sequence[str]):
        self.connection = connection
        self.settings = settings
        self.registry = ModelRegistry(connection, settings)
        self.models = list(models)

    def collect(self) -> Iterator[Metric]:
        """The gauges (only ``streamrec_redis_up`` 0 when Redis cannot be read)."""
        up = GaugeMetricFamily("streamrec_redis_up", "1 when the scrape could read Redis.")
        try:
            found = list(self._read())
        except (redis.RedisError, OSError) as exc:
            logger.warning("metrics: could not read Redis: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from found

    def _read(self) -> Iterator[Metric]:
        now = time.time()
        depth = GaugeMetricFamily("streamrec_queue_depth", "Jobs waiting.", labels=["queue"])
        oldest = GaugeMetricFamily(
            "streamrec_queue_oldest_seconds", "Age of the oldest waiting job.", labels=["queue"]
        )
        for name in keys.all_queues(self.settings.event_shards):
            lag = queue_lag(self.connection, name, now)
            depth.add_metric([name], lag.queued_batches)
            oldest.add_metric([name], lag.oldest_queued_seconds or 0.0)
        yield depth
        yield oldest
        counts = read_counts(self.connection)
        for name, value, text in (
            ("streamrec_dead_letters", counts.dead_letters, "Entries in the dead-letter list."),
            ("streamrec_quarantined", counts.quarantined, "Queue entries set aside unrun."),
            ("streamrec_unserved_batches", counts.unserved, "Batches whose users wait."),
        ):
            yield GaugeMetricFamily(name, text, value=value)
        version = GaugeMetricFamily(
            "streamrec_model_version", "Published version.", labels=["model"]
        )
        age = GaugeMetricFamily(
            "streamrec_model_age_seconds", "Seconds since the last publish.", labels=["model"]
        )
        for model in self.models:
            published = self.registry.last_published(model)
            if published is not None:
                version.add_metric([model], published.version)
                age.add_metric([model], max(0.0, now - published.at))
        yield version
        yield age


class _ThisProcess:
    """The default registry's series (this process's metrics), forwarded."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def metrics_registry(
    connection: redis.Redis,
    settings: Settings,
    models: Sequence[str],
    multiprocess_dir: Path | None = None,
) -> CollectorRegistry:
    """What ``/metrics`` serves: this process's series, or those of every process writing to
    ``multiprocess_dir``; and the Redis gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir is not None:
        MultiProcessCollector(registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(StateCollector(connection, settings, models))
    return registry


def serve_metrics(port: int, registry: CollectorRegistry) -> Any:
    """Serve ``registry`` on ``http://0.0.0.0:port/metrics`` from a daemon thread; returns
    the HTTP server (``shutdown()`` stops it).

    Raises:
        ConfigError: the port cannot be bound.
    """
    try:
        server, _ = start_http_server(port, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on port {port} ({exc}): set STREAMREC_METRICS_PORT to a "
            "free port, one per process"
        ) from exc
    logger.info("metrics: serving on port %d", port)
    return server
